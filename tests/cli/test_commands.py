"""The ``cloaca`` sub-commands through ``main(argv)``, on SQLite and PostgreSQL.

Exit codes, output (JSON read back, tables checked for what a person looks for)
and one-line errors on stderr. ``cloaca run`` itself runs in subprocesses
(``test_service.py``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import FLOWS, Cli, Database

SUBCOMMANDS = [
    ["run"],
    ["execute"],
    ["executions"],
    ["executions", "list"],
    ["executions", "show"],
    ["workflows"],
    ["workflows", "list"],
    ["graph"],
    ["tenant"],
    ["tenant", "create"],
    ["tenant", "list"],
    ["tenant", "remove"],
    ["db"],
    ["db", "upgrade"],
    ["doctor"],
    ["bench"],
]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cloaca: error: "), err
    return lines[0]


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(cli: Cli, argv: list[str]) -> None:
    result = cli(*argv, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: cloaca {' '.join(argv)}")


def test_no_subcommand_prints_usage_and_exits_2(cli: Cli) -> None:
    result = cli()
    assert result.code == 2
    assert "usage: cloaca" in result.err


def test_version(cli: Cli) -> None:
    import cloaca

    result = cli("--version")
    assert (result.code, result.out.strip()) == (0, f"cloaca {cloaca.__version__}")


def test_missing_database_is_a_usage_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLOACA_DATABASE_URL", raising=False)
    result = cli("executions", "list")
    assert result.code == 2
    assert one_error_line(result.err) == (
        "cloaca: error: no database: pass --db URL or set CLOACA_DATABASE_URL"
    )


def test_environment_variable_replaces_db(
    cli: Cli, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOACA_DATABASE_URL", sqlite_url)
    ran = cli("execute", "cli_chain", "--workflows", FLOWS, "--wait", "--json")
    assert ran.code == 0, ran.err
    listed = cli("executions", "list", "--json")
    assert [e["execution_id"] for e in json.loads(listed.out)] == [
        json.loads(ran.out)["execution_id"]
    ]


def test_execute_wait_runs_in_process(cli: Cli, database: Database) -> None:
    result = cli(
        "execute",
        "cli_chain",
        *database.options,
        "--workflows",
        FLOWS,
        "--context",
        '{"order": 7}',
        "--wait",
        "--json",
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["status"] == "Completed"
    assert data["error"] is None
    assert data["context"] == {"order": 7, "trail": ["first", "gate", "last"]}
    assert [(t["task"], t["status"], t["attempts"]) for t in data["tasks"]] == [
        ("first", "Completed", 1),
        ("gate", "Completed", 1),
        ("last", "Completed", 1),
    ]
    uuid.UUID(data["execution_id"])


def test_execute_wait_human_output(cli: Cli, sqlite_url: str) -> None:
    result = cli(
        "execute", "cli_chain", "--db", sqlite_url, "--workflows", FLOWS, "--wait"
    )
    assert result.code == 0, result.err
    head, *context = result.out.splitlines()
    execution_id, status, *_ = head.split()
    uuid.UUID(execution_id)
    assert status == "Completed"
    assert json.loads("\n".join(context))["trail"] == ["first", "gate", "last"]


def test_execute_wait_failed_execution_exits_1(cli: Cli, database: Database) -> None:
    result = cli(
        "execute",
        "cli_fails",
        *database.options,
        "--workflows",
        FLOWS,
        "--wait",
        "--json",
    )
    assert result.code == 1
    data = json.loads(result.out)
    assert data["status"] == "Failed"
    assert "boom" in data["error"]
    assert "bad input" in data["error"]
    statuses = {t["task"]: t["status"] for t in data["tasks"]}
    assert statuses == {"boom": "Failed", "after": "Completed"}


def test_execute_submits_a_pending_execution(cli: Cli, database: Database) -> None:
    submitted = cli("execute", "cli_chain", *database.options, "--workflows", FLOWS)
    assert submitted.code == 0, submitted.err
    execution_id = submitted.out.strip()
    uuid.UUID(execution_id)
    shown = cli("executions", "show", execution_id, *database.options, "--json")
    assert shown.code == 0, shown.err
    data = json.loads(shown.out)
    assert data["status"] == "Pending"
    assert data["workflow"] == "cli_chain"
    assert {t["task"]: t["status"] for t in data["tasks"]} == {
        "first": "NotStarted",
        "gate": "NotStarted",
        "last": "NotStarted",
    }


def test_context_from_file_and_stdin(
    cli: Cli, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ctx.json"
    path.write_text('{"from": "file"}', encoding="utf-8")
    base = ["execute", "cli_chain", "--db", sqlite_url, "--workflows", FLOWS, "--wait"]
    from_file = cli(*base, "--context", f"@{path}", "--json")
    assert json.loads(from_file.out)["context"]["from"] == "file"
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    from_stdin = cli(*base, "--context", "@-", "--json")
    assert json.loads(from_stdin.out)["context"]["from"] == "stdin"


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        (
            "[1, 2]",
            "cloaca: error: invalid --context: Failed to deserialize from JSON:",
        ),
        ("{oops", "cloaca: error: invalid --context: Failed to deserialize from JSON:"),
        ("@/nonexistent/ctx.json", "cloaca: error: cannot read context file"),
    ],
)
def test_bad_context_is_a_usage_error(
    cli: Cli, sqlite_url: str, context: str, fragment: str
) -> None:
    result = cli(
        "execute",
        "cli_chain",
        "--db",
        sqlite_url,
        "--workflows",
        FLOWS,
        "--context",
        context,
    )
    assert result.code == 2
    assert one_error_line(result.err).startswith(fragment)


def test_unknown_workflow_names_the_registered_ones(cli: Cli, sqlite_url: str) -> None:
    result = cli("execute", "nope", "--db", sqlite_url, "--workflows", FLOWS)
    assert result.code == 2
    assert one_error_line(result.err) == (
        "cloaca: error: unknown workflow 'nope' (registered: cli_chain, cli_fails); "
        "load the module defining it with --workflows"
    )


def test_unimportable_module(cli: Cli, sqlite_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no luck')\n", encoding="utf-8")
    for spec, reason in [
        (str(broken), "RuntimeError: no luck"),
        (
            "no_such_module_xyz",
            "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        ),
    ]:
        result = cli("graph", "x", "--workflows", spec)
        assert result.code == 2
        assert one_error_line(result.err) == (
            f"cloaca: error: cannot load workflows from {spec!r}: {reason}"
        )


def test_executions_list_filters(cli: Cli, database: Database) -> None:
    opts = [*database.options, "--workflows", FLOWS]
    ok = json.loads(cli("execute", "cli_chain", *opts, "--wait", "--json").out)
    bad = json.loads(cli("execute", "cli_fails", *opts, "--wait", "--json").out)
    pending = cli("execute", "cli_chain", *opts).out.strip()

    def ids(*extra: str) -> list[str]:
        result = cli("executions", "list", *database.options, "--json", *extra)
        assert result.code == 0, result.err
        return [e["execution_id"] for e in json.loads(result.out)]

    assert ids() == [pending, bad["execution_id"], ok["execution_id"]]
    assert ids("--status", "failed") == [bad["execution_id"]]
    assert ids("--workflow", "cli_chain") == [pending, ok["execution_id"]]
    assert ids("--limit", "1") == [pending]
    table = cli("executions", "list", *database.options).out.splitlines()
    assert table[0].split() == ["ID", "WORKFLOW", "STATUS", "STARTED", "DURATION"]
    assert table[2].split()[:3] == [bad["execution_id"], "cli_fails", "Failed"]


def test_bad_status_filter(cli: Cli, sqlite_url: str) -> None:
    result = cli("executions", "list", "--db", sqlite_url, "--status", "done")
    assert result.code == 2
    assert "invalid status 'done'" in result.err


def test_executions_show_table_and_timeline(cli: Cli, database: Database) -> None:
    opts = [*database.options, "--workflows", FLOWS]
    failed = json.loads(cli("execute", "cli_fails", *opts, "--wait", "--json").out)
    shown = cli("executions", "show", failed["execution_id"], *database.options)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0] == f"execution  {failed['execution_id']}"
    assert "status     Failed" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("TASK"))
    assert lines[header].split() == [
        "TASK", "STATE", "ATTEMPTS", "START", "DURATION", "ERROR"
    ]  # fmt: skip
    boom = lines[header + 1].split()
    assert boom[:3] == ["boom", "Failed", "1/1"]
    assert lines[header + 1].endswith("ValueError: bad input")
    bars = [line for line in lines if line.startswith(("boom ", "after "))][-2:]
    assert "|X" in bars[0]
    assert bars[0].endswith("Failed")
    assert "#" in bars[1]
    assert bars[1].endswith("Completed")
    detail = json.loads(
        cli(
            "executions", "show", failed["execution_id"], *database.options, "--json"
        ).out
    )
    boom_task = next(t for t in detail["tasks"] if t["task"] == "boom")
    assert boom_task["error"] == "Python task execution failed: ValueError: bad input"
    assert boom_task["duration_seconds"] >= 0


def test_executions_show_unknown_and_invalid_ids(cli: Cli, database: Database) -> None:
    cli("db", "upgrade", *database.options)
    missing = str(uuid.uuid4())
    result = cli("executions", "show", missing, *database.options)
    assert result.code == 1
    assert one_error_line(result.err).startswith(
        f"cloaca: error: no execution {missing}"
    )
    invalid = cli("executions", "show", "123", *database.options)
    assert invalid.code == 2
    assert one_error_line(invalid.err) == (
        "cloaca: error: not an execution id: '123' (expected a UUID)"
    )


def test_reading_a_missing_database_does_not_create_it(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "typo.db"
    result = cli("executions", "list", "--db", "sqlite://" + str(path))
    assert result.code == 1
    assert "holds no cloaca data: no database file at" in one_error_line(result.err)
    assert not path.exists()


@pytest.mark.postgres
def test_unreachable_postgres_is_unavailable(cli: Cli) -> None:
    result = cli("executions", "list", "--db", "postgresql://u:secret@127.0.0.1:1/db")
    assert result.code == 3
    line = one_error_line(result.err)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in line
    assert "secret" not in line


def test_graph_formats(cli: Cli) -> None:
    base = ["graph", "cli_chain", "--workflows", FLOWS]
    text = cli(*base).out.splitlines()
    assert text[1:] == [
        "  three steps; the middle one can be held at a gate",
        "  [0] first",
        "  [1] gate   <- first",
        "  [2] last   <- gate",
    ]
    assert text[0].startswith("workflow cli_chain  version ")
    assert cli(*base, "--format", "mermaid").out.splitlines() == [
        "flowchart TD",
        '    t0["first"]',
        '    t1["gate"]',
        '    t2["last"]',
        "    t0 --> t1",
        "    t1 --> t2",
    ]
    dot = cli(*base, "--format", "dot").out
    assert dot.startswith('digraph "cli_chain" {')
    assert '    "first" -> "gate";' in dot.splitlines()
    graph = json.loads(cli(*base, "--format", "json").out)
    assert graph["edges"] == [["first", "gate"], ["gate", "last"]]
    assert [t["level"] for t in graph["tasks"]] == [0, 1, 2]


def test_workflows_list(cli: Cli) -> None:
    listed = cli("workflows", "list", "--workflows", FLOWS)
    assert listed.code == 0
    lines = listed.out.splitlines()
    assert lines[0].split() == ["NAME", "TASKS", "VERSION", "DESCRIPTION"]
    assert lines[1].split()[:2] == ["cli_chain", "3"]
    assert lines[2].split()[:2] == ["cli_fails", "2"]
    data = json.loads(cli("workflows", "list", "--workflows", FLOWS, "--json").out)
    assert [w["workflow"] for w in data] == ["cli_chain", "cli_fails"]


def test_db_upgrade_then_doctor(cli: Cli, database: Database) -> None:
    created = cli("db", "upgrade", *database.options, "--json")
    assert created.code == 0, created.err
    data = json.loads(created.out)
    assert data["state"] == "current"
    assert data["applied"] == data["versions"]
    assert data["applied"]
    again = cli("db", "upgrade", *database.options)
    assert again.out.strip().endswith("is up to date")
    doctor = cli("doctor", *database.options, "--json")
    assert doctor.code == 0, doctor.out
    report = json.loads(doctor.out)
    assert report["verdict"] == "ok"
    assert [c["check"] for c in report["checks"]] == [
        "url", "connectivity", "schema", "migrations", "executions"
    ]  # fmt: skip
    human = cli("doctor", *database.options).out.splitlines()
    assert human[-1] == "verdict: ok"


def test_doctor_on_a_new_database_warns(cli: Cli, sqlite_url: str) -> None:
    result = cli("doctor", "--db", sqlite_url)
    assert result.code == 0
    assert result.out.splitlines()[-1] == "verdict: ok, with warnings"
    assert "'cloaca db upgrade' or 'cloaca run' creates it" in result.out


@pytest.mark.parametrize(
    "url",
    [
        "mysql://nope",
        pytest.param("postgresql://u@127.0.0.1:1/db", marks=pytest.mark.postgres),
    ],
)
def test_doctor_reports_problems(cli: Cli, url: str) -> None:
    result = cli("doctor", "--db", url, "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["verdict"] == "problems found"
    assert report["checks"][-1]["status"] == "fail"


def test_doctor_refuses_a_foreign_layout(cli: Cli, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE pipeline_executions (id INTEGER)")
    result = cli("doctor", "--db", "sqlite://" + str(path))
    assert result.code == 1
    assert "[fail] schema" in result.out
    assert "refusing to take it over" in result.out


def test_tenant_commands_need_postgres(cli: Cli, sqlite_url: str) -> None:
    result = cli("tenant", "list", "--db", sqlite_url)
    assert result.code == 2
    assert one_error_line(result.err) == (
        "cloaca: error: DatabaseAdmin requires a PostgreSQL connection. SQLite does "
        "not support database schemas or user management. Use a PostgreSQL URL like "
        "'postgres://user:pass@host/db'"
    )


@pytest.mark.postgres
def test_tenant_create_list_remove(cli: Cli) -> None:
    from tests.cli.conftest import PG_URL, drop_schema

    suffix = uuid.uuid4().hex[:12]
    schema, user = f"cli_tenant_{suffix}", f"cli_role_{suffix}"
    try:
        created = cli(
            "tenant",
            "create",
            schema,
            user,
            "--db",
            PG_URL,
            "--password",
            "pw1",
            "--json",
        )
        assert created.code == 0, created.err
        credentials = json.loads(created.out)
        assert credentials["schema"] == schema
        assert credentials["username"] == user
        assert credentials["password"] == "pw1"
        assert credentials["connection_string"].startswith(f"postgresql://{user}:pw1@")
        listed = json.loads(cli("tenant", "list", "--db", PG_URL, "--json").out)
        assert {"schema": schema, "roles": [user]} in listed
        refused = cli("tenant", "remove", schema, user, "--db", PG_URL)
        assert refused.code == 2
        assert "without --yes" in one_error_line(refused.err)
        removed = cli("tenant", "remove", schema, user, "--db", PG_URL, "--yes")
        assert removed.code == 0, removed.err
        listed = json.loads(cli("tenant", "list", "--db", PG_URL, "--json").out)
        assert all(t["schema"] != schema for t in listed)
    finally:
        drop_schema(schema)


@pytest.mark.postgres
def test_tenant_create_failure_is_one_line(cli: Cli) -> None:
    from tests.cli.conftest import PG_URL

    result = cli("tenant", "create", "", "someone", "--db", PG_URL)
    assert result.code == 1
    assert one_error_line(result.err) == (
        "cloaca: error: Failed to create tenant: Invalid configuration: "
        "Schema name cannot be empty"
    )
