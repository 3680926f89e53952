"""topology.yaml → typed model, and every mistake in it reported at once with its line."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.errors import TopologyError
from streams.topology import AgentSpec, EventTypeSpec, TopicSpec, load_topology
from streams.yaml_nodes import Problem

HANDLERS = """
async def handle(event, ctx):
    return None


async def stream(event, ctx):
    yield None
"""

TRANSACTION = {"type": "record", "name": "Transaction", "fields": [{"name": "id", "type": "string"}]}
FLAGGED = {"type": "record", "name": "FlaggedTransaction", "fields": [{"name": "reason", "type": "string"}]}

VALID = """\
app: kappa-demo
events:
  transaction.created: {schema: Transaction}
  transaction.flagged: {schema: FlaggedTransaction}
  compliance.report: {}
topics:
  transactions.card:    {partitions: 4, events: [transaction.created]}
  transactions.wire:    {partitions: 4, events: [transaction.created]}
  transactions.flagged: {partitions: 4, events: [transaction.flagged]}
  compliance.reports:   {retention_ms: 604800000, cleanup_policy: delete, config: {"max.message.bytes": 1048576}}
agents:
  fraud:
    handler: {module}:handle
    subscribe: ["transactions.*"]
    exclude: [transactions.flagged]
    emits: [transactions.flagged]
    tables: [risk]
    concurrency: 16
  compliance:
    handler: {module}:stream
    subscribe: transactions.flagged
    emits: [compliance.reports]
"""


pytestmark = pytest.mark.usefixtures("restore_sys_path")


@pytest.fixture
def module(tmp_path: Path) -> str:
    """A fresh handler module next to the topology; a unique name dodges sys.modules caching."""
    name = f"handlers_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(HANDLERS)
    return name


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    directory = tmp_path / "schemas"
    directory.mkdir()
    for schema in (TRANSACTION, FLAGGED):
        (directory / f"{schema['name']}.avsc").write_text(json.dumps(schema))
    return directory


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, **options: Any) -> list[Problem]:
    with pytest.raises(TopologyError) as caught:
        load_topology(path, **options)
    return caught.value.problems


def located(path: Path, **options: Any) -> set[tuple[int, str]]:
    return {(problem.line, problem.where) for problem in problems(path, **options)}


def agents_only(agents: str, topics: str = "{a: {}, b: {}, c: {partitions: 2}}") -> str:
    """A file whose only interesting part is its agents: topics a, b (1 partition) and c (2)."""
    return f"app: demo\ntopics: {topics}\nagents:\n{textwrap.indent(textwrap.dedent(agents), '  ')}"


def test_valid_file_loads_into_the_exact_model(tmp_path: Path, module: str, schemas: Path) -> None:
    topology = load_topology(write(tmp_path, VALID.replace("{module}", module)))

    assert topology.app == "kappa-demo"
    assert topology.events["transaction.created"] == EventTypeSpec("transaction.created", "Transaction", 3)
    assert topology.events["compliance.report"] == EventTypeSpec("compliance.report", None, 5)
    assert list(topology.topics) == [
        "transactions.card", "transactions.wire", "transactions.flagged", "compliance.reports"
    ]
    assert topology.topics["transactions.card"] == TopicSpec(
        "transactions.card", partitions=4, events=("transaction.created",), line=7
    )
    assert topology.topics["compliance.reports"] == TopicSpec(
        "compliance.reports", retention_ms=604800000, config=(("max.message.bytes", "1048576"),), line=10
    )
    assert topology.agents["fraud"] == AgentSpec(
        name="fraud",
        handler=f"{module}:handle",
        subscribe=("transactions.*",),
        inputs=("transactions.card", "transactions.wire"),
        emits=("transactions.flagged",),
        tables=("risk",),
        concurrency=16,
        line=12,
    )
    assert topology.agents["compliance"] == AgentSpec(
        name="compliance",
        handler=f"{module}:stream",
        subscribe=("transactions.flagged",),
        inputs=("transactions.flagged",),
        emits=("compliance.reports",),
        tables=(),
        concurrency=1,
        line=19,
    )


def test_broken_file_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        app: Kappa Demo
        topics:
          orders: {partitions: four}
          payments: {partitions: 2, cleanup_policy: compacted}
          payments: {partitions: 3}
          audit: {retension_ms: 1000}
        agents:
          billing:
            handler: billing.handle
            subscribe: [orders, refunds]
            emits: [payment]
            concurrency: 0
          Audit:
            subscribe: audit
        """)

    found = problems(path)

    assert {(problem.line, problem.where) for problem in found} == {
        (1, "app"),
        (3, "topics.orders.partitions"),
        (4, "topics.payments.cleanup_policy"),
        (5, "topics.payments"),
        (6, "topics.audit.retension_ms"),
        (9, "agents.billing.handler"),
        (10, "agents.billing.subscribe[1]"),
        (11, "agents.billing.emits[0]"),
        (12, "agents.billing.concurrency"),
        (13, "agents.Audit"),
    }
    assert [problem.line for problem in found] == sorted(problem.line for problem in found)


def test_problem_reads_as_file_line_path_message_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        billing:
          handler: x:handle
          subscribe: a
          emits: [bb]
        """, topics="{a: {}, bb.out: {}, b: {}}"))

    [problem] = problems(path, import_handlers=False)

    assert str(problem) == (
        f"{path}:7: agents.billing.emits[0]: topic 'bb' is not defined (did you mean 'b'?). "
        "Fix: declare it under topics: or correct the name."
    )


def test_undefined_topic_is_reported_with_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        fraud:
          handler: x:handle
          subscribe: [transactions.crad]
        """, topics="{transactions.card: {}, transactions.wire: {}}"))

    [problem] = problems(path, import_handlers=False)

    assert (problem.line, problem.where) == (6, "agents.fraud.subscribe[0]")
    assert "'transactions.crad' is not defined (did you mean 'transactions.card'?)" in problem.message


def test_missing_required_keys_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "topics: {a: {}}\nagents:\n  lazy: {}\n")

    messages = {(p.line, p.where, p.message) for p in problems(path)}

    assert messages == {
        (1, "", "missing required key 'app'"),
        (3, "agents.lazy", "missing required key 'handler'"),
        (3, "agents.lazy", "missing required key 'subscribe'"),
    }


def test_duplicate_keys_are_reported_at_the_second_declaration(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        fraud:
          handler: x:handle
          subscribe: a
          subscribe: b
        fraud:
          handler: y:handle
          subscribe: c
        """))

    found = problems(path, import_handlers=False)

    assert {(p.line, p.where) for p in found} == {(7, "agents.fraud.subscribe"), (8, "agents.fraud")}
    assert found[1].message == "'fraud' is declared twice (first at line 4)"


def test_unknown_key_suggests_the_closest_allowed_key(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        fraud:
          handler: x:handle
          subscribe: a
          emit: [b]
        """))

    [problem] = problems(path, import_handlers=False)

    assert (problem.line, problem.where) == (7, "agents.fraud.emit")
    assert problem.message == "unknown key 'emit' (did you mean 'emits'?)"
    assert problem.fix == "use one of: handler, subscribe, exclude, emits, tables, concurrency, timeout_s, version, max_model_calls"


def test_wrong_values_and_illegal_names_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        app: demo
        topics:
          "bad topic": {}
          ok: {replication: 0, retention_ms: -2, config: {"retention.ms": 5, "flag": [1]}}
        agents:
          fraud:
            handler: x:handle
            subscribe: ok
            tables: [Risk, risk, risk]
        """)

    assert located(path, import_handlers=False) == {
        (3, "topics.bad topic"),
        (4, "topics.ok.replication"),
        (4, "topics.ok.retention_ms"),
        (4, "topics.ok.config.retention.ms"),
        (4, "topics.ok.config.flag"),
        (9, "agents.fraud.tables[0]"),
        (9, "agents.fraud.tables[2]"),
    }


def test_yaml_syntax_error_is_one_problem_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "app: demo\ntopics:\n  a: {partitions: 1\n  b: {}\n")

    [problem] = problems(path)

    assert problem.line == 4
    assert problem.message.startswith("invalid YAML")


def test_missing_file_is_one_problem_naming_the_path(tmp_path: Path) -> None:
    [problem] = problems(tmp_path / "nowhere.yaml")

    assert problem.line == 0
    assert str(tmp_path / "nowhere.yaml") in str(problem)


def test_pattern_matching_no_topic_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        fraud:
          handler: x:handle
          subscribe: ["orders.*", a]
        """))

    [problem] = problems(path, import_handlers=False)

    assert (problem.line, problem.where) == (6, "agents.fraud.subscribe[0]")
    assert problem.message == "pattern 'orders.*' matches no declared topic"


def test_excluding_every_subscribed_topic_leaves_no_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        fraud:
          handler: x:handle
          subscribe: "[ab]"
          exclude: [a, b]
        """))

    [problem] = problems(path, import_handlers=False)

    assert (problem.line, problem.where) == (4, "agents.fraud")
    assert "no inputs" in problem.message


def test_pattern_that_matches_an_emitted_topic_is_a_loop(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        fraud:
          handler: x:handle
          subscribe: ["*"]
          emits: [b]
        """, topics="{a: {}, b: {}}"))

    [problem] = problems(path, import_handlers=False)

    assert (problem.line, problem.where) == (6, "agents.fraud.subscribe[0]")
    assert problem.fix == "add `exclude: [b]` or narrow the pattern"


@pytest.mark.parametrize("subscription", ["[a, b]", '["*"]\n  exclude: [b]'])
def test_exact_self_subscription_or_excluded_output_is_not_a_loop(tmp_path: Path, subscription: str) -> None:
    agent = f"fraud:\n  handler: x:handle\n  subscribe: {subscription}\n  emits: [b]\n"
    text = agents_only(agent, topics="{a: {}, b: {}}")

    topology = load_topology(write(tmp_path, text), import_handlers=False)

    assert topology.agents["fraud"].emits == ("b",)


def test_tables_need_co_partitioned_inputs(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("""\
        fraud:
          handler: x:handle
          subscribe: [a, c]
          tables: [risk]
        """))

    [problem] = problems(path, import_handlers=False)

    assert (problem.line, problem.where) == (7, "agents.fraud.tables")
    assert "a: 1, c: 2" in problem.message


def test_agent_without_tables_may_read_differently_partitioned_topics(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("fraud: {handler: 'x:handle', subscribe: [a, c]}\n"))

    assert load_topology(path, import_handlers=False).agents["fraud"].inputs == ("a", "c")


@pytest.mark.parametrize(
    ("handler", "source", "expected"),
    [
        ("missing_module_{id}:handle", None, "does not import: ModuleNotFoundError"),
        ("broken_{id}:handle", "raise RuntimeError('boom')", "does not import: RuntimeError('boom')"),
        ("ok_{id}:absent", "async def handle(event, ctx): ...", "has no attribute 'absent'"),
        ("ok_{id}:handle", "def handle(event, ctx): ...", "is not an async function"),
    ],
)
def test_handler_that_cannot_be_used_is_reported(
    tmp_path: Path, handler: str, source: str | None, expected: str
) -> None:
    module_ref = handler.format(id=uuid.uuid4().hex)
    if source is not None:
        (tmp_path / f"{module_ref.partition(':')[0]}.py").write_text(source)
    path = write(tmp_path, agents_only(f"fraud:\n  handler: {module_ref}\n  subscribe: a\n"))

    [problem] = problems(path)

    assert (problem.line, problem.where) == (5, "agents.fraud.handler")
    assert expected in problem.message


def test_handlers_are_not_imported_when_asked_not_to(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("fraud: {handler: 'missing:handle', subscribe: a}\n"))

    assert load_topology(path, import_handlers=False).agents["fraud"].handler == "missing:handle"


def test_schema_file_must_exist_and_be_a_valid_avro_record(tmp_path: Path, schemas: Path) -> None:
    broken = {"type": "record", "name": "Broken", "fields": [{"name": "x"}]}
    (schemas / "Broken.avsc").write_text(json.dumps(broken))
    path = write(tmp_path, """\
        app: demo
        events:
          a: {schema: Absent}
          b: {schema: Broken}
          c: {schema: Transaction}
        topics: {t: {events: [a, b, c, d]}}
        """)

    found = {p.where: p for p in problems(path)}

    assert set(found) == {"events.a.schema", "events.b.schema", "topics.t.events[3]"}
    assert found["events.a.schema"].message == "schema file schemas/Absent.avsc does not exist"
    assert "schemas/Broken.avsc is not a valid Avro record schema" in found["events.b.schema"].message
    assert found["topics.t.events[3]"].line == 6


def test_namespace_prefixes_physical_topics_and_consumer_groups(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("fraud: {handler: 'x:handle', subscribe: a}\n"))

    topology = load_topology(path, namespace="test-1.", import_handlers=False)

    assert topology.topic_name("a") == "test-1.a"
    assert topology.group_id("fraud") == "test-1.demo.fraud"
    assert "namespace 'test-1.'" in topology.summary()


def test_all_topics_adds_each_agents_failure_topics_and_the_action_log(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        app: demo
        events: {e: {}}
        topics: {a: {events: [e]}, b: {}, c: {partitions: 2, replication: 3}}
        agents:
          fraud: {handler: 'x:handle', subscribe: [a, c], emits: [b]}
          audit: {handler: 'x:handle', subscribe: a}
        failures: {retry_delays_s: [1, 5]}
        """)

    topology = load_topology(path, import_handlers=False)

    assert topology.dead_letter_topic("fraud") == "fraud.dlq"
    assert [(t.name, t.partitions, t.replication, t.cleanup_policy) for t in topology.all_topics()] == [
        ("a", 1, 1, "delete"),
        ("agents.actions", 4, 3, "delete"),
        ("audit.dlq", 1, 1, "delete"),
        ("audit.human", 1, 1, "delete"),
        ("audit.redrive", 1, 1, "delete"),
        ("audit.replays", 1, 1, "compact"),
        ("audit.retry.1", 1, 1, "delete"),
        ("audit.retry.2", 1, 1, "delete"),
        ("b", 1, 1, "delete"),
        ("c", 2, 3, "delete"),
        ("fraud.dlq", 2, 3, "delete"),
        ("fraud.human", 2, 3, "delete"),
        ("fraud.redrive", 2, 3, "delete"),
        ("fraud.replays", 2, 3, "compact"),
        ("fraud.retry.1", 2, 3, "delete"),
        ("fraud.retry.2", 2, 3, "delete"),
        ("projections.dlq", 4, 3, "delete"),
    ]


def test_kafka_config_has_cleanup_retention_and_extra_configs() -> None:
    topic = TopicSpec("t", retention_ms=-1, cleanup_policy="compact,delete", config=(("segment.ms", "100"),))

    assert topic.kafka_config() == {"cleanup.policy": "compact,delete", "retention.ms": "-1", "segment.ms": "100"}
    assert TopicSpec("u").kafka_config() == {"cleanup.policy": "delete"}


def test_schema_path_points_into_the_schemas_directory(tmp_path: Path, module: str, schemas: Path) -> None:
    topology = load_topology(write(tmp_path, VALID.replace("{module}", module)))

    assert topology.schema_path("transaction.created") == schemas / "Transaction.avsc"
    assert topology.schema_path("compliance.report") is None


def test_summary_lists_each_agent_with_inputs_and_outputs(tmp_path: Path, module: str, schemas: Path) -> None:
    topology = load_topology(write(tmp_path, VALID.replace("{module}", module)))

    assert topology.summary().splitlines() == [
        "app kappa-demo: 4 topics, 2 agents",
        "  fraud: transactions.card, transactions.wire -> transactions.flagged; tables: risk; concurrency 16",
        "  compliance: transactions.flagged -> compliance.reports; concurrency 1",
    ]


def test_namespace_must_be_usable_in_kafka_topic_names(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("fraud: {handler: 'x:handle', subscribe: a}\n"))

    [problem] = problems(path, namespace="my sandbox/", import_handlers=False)

    assert (problem.line, problem.where) == (0, "namespace")


def test_empty_file_is_reported(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "# nothing yet\n"))

    assert problem.message == "the file is empty"


def test_shipped_topology_is_valid() -> None:
    topology = load_topology(Path(__file__).parents[2] / "topology.yaml")

    assert set(topology.agents) == {"fraud", "compliance"}


def test_declared_dead_letter_topic_replaces_the_generated_one(tmp_path: Path) -> None:
    text = agents_only("fraud: {handler: 'x:handle', subscribe: a}\n", topics="{a: {}, fraud.dlq: {retention_ms: -1}}")

    topology = load_topology(write(tmp_path, text), import_handlers=False)

    assert [(t.name, t.retention_ms) for t in topology.all_topics() if t.name in ("a", "fraud.dlq")] == [("a", None), ("fraud.dlq", -1)]


def test_failure_policy_defaults_and_overrides(tmp_path: Path) -> None:
    text = agents_only("fraud: {handler: 'x:handle', subscribe: a}\n", topics="{a: {}}")
    text += "failures: {retry_delays_s: [1, 2], max_hops: 3, categories: {unknown: {max_attempts: 3}, poison: {retryable: true}}}\n"

    policy = load_topology(write(tmp_path, text), import_handlers=False).failures

    assert policy.max_hops == 3
    assert [policy.retry_level("rate_limited", a) for a in range(3)] == [1, 2, None]  # one per level
    assert [policy.retry_level("unknown", a) for a in range(3)] == [1, 2, None]  # max_attempts 3
    assert policy.retry_level("validation_failed", 0) == 1 and policy.retry_level("validation_failed", 1) is None
    assert policy.retry_level("context_window_exceeded", 0) is None
    assert policy.retry_level("poison", 0) == 1  # overridden


def test_unknown_failure_category_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    text = agents_only("fraud: {handler: 'x:handle', subscribe: a}\n", topics="{a: {}}")
    text += "failures:\n  categories:\n    rate_limit: {retryable: true}\n"

    [problem] = problems(write(tmp_path, text), import_handlers=False)

    assert "unknown failure category 'rate_limit' (did you mean 'rate_limited'?)" in problem.message


def test_an_agent_may_not_take_the_name_of_the_built_in_projections_worker(tmp_path: Path) -> None:
    path = write(tmp_path, agents_only("projections: {handler: 'x:handle', subscribe: a}\n"))

    [problem] = problems(path, import_handlers=False)

    assert problem.where == "agents.projections" and "built-in worker" in problem.message and "rename" in problem.fix
