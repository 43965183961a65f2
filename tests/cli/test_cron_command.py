"""``cloaca cron``: manage schedules that a running ``cloaca run`` fires."""

from __future__ import annotations

import json

import cloaca

from .conftest import Cli, Database


def test_add_list_disable_history_remove(cli: Cli, database: Database) -> None:
    assert cli("db", "upgrade", *database.options).code == 0
    added = cli(
        "cron",
        "add",
        "nightly",
        "0 3 * * *",
        "--timezone",
        "Europe/Berlin",
        *database.options,
    )
    assert added.code == 0, added.err
    schedule_id = added.out.strip()

    listed = cli("cron", "list", "--json", *database.options)
    assert listed.code == 0
    [row] = json.loads(listed.out)
    assert row["id"] == schedule_id
    assert row["workflow_name"] == "nightly"
    assert row["timezone"] == "Europe/Berlin"
    assert row["enabled"] is True
    assert row["catchup_policy"] == "skip"
    assert row["next_run_at"].endswith(":00:00+00:00")

    assert cli("cron", "disable", schedule_id, *database.options).code == 0
    human = cli("cron", "list", *database.options)
    assert "nightly" in human.out
    assert " no " in human.out
    assert cli("cron", "enable", schedule_id, *database.options).code == 0
    assert json.loads(cli("cron", "list", "--json", *database.options).out)[0][
        "enabled"
    ]

    history = cli("cron", "history", schedule_id, "--json", *database.options)
    assert history.code == 0
    assert json.loads(history.out) == []

    assert cli("cron", "remove", schedule_id, *database.options).code == 0
    assert json.loads(cli("cron", "list", "--json", *database.options).out) == []


def test_schedules_added_by_the_command_are_seen_by_runners(
    cli: Cli, database: Database
) -> None:
    assert cli("db", "upgrade", *database.options).code == 0
    schedule_id = cli(
        "cron", "add", "report", "*/5 * * * *", *database.options
    ).out.strip()
    if database.schema is None:
        runner = cloaca.DefaultRunner(database.url)
    else:
        runner = cloaca.DefaultRunner.with_schema(database.url, database.schema)
    with runner:
        assert runner.get_cron_schedule(schedule_id)["cron_expression"] == "*/5 * * * *"


def test_bad_expression_timezone_and_id_are_named(cli: Cli, database: Database) -> None:
    assert cli("db", "upgrade", *database.options).code == 0
    bad = cli("cron", "add", "w", "61 * * * *", *database.options)
    assert bad.code == 2
    assert bad.err.startswith("cloaca: error: Failed to register cron workflow:")
    assert "61 * * * *" in bad.err
    zone = cli(
        "cron", "add", "w", "0 * * * *", "--timezone", "Mars/Olympus", *database.options
    )
    assert zone.code == 2
    assert "Mars/Olympus" in zone.err
    wrong_id = cli("cron", "disable", "not-a-uuid", *database.options)
    assert wrong_id.code == 2
    assert "Invalid schedule ID" in wrong_id.err
    assert len(bad.err.strip().splitlines()) == 1
