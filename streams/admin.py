"""Make the broker's topics match the topology, idempotently.

``apply_topics`` creates what is missing, adds partitions and sets configs
that differ, and leaves the rest alone, so running it on every start is safe.
It tries every topic and then reports every failure at once, each with its
reason and fix (as quixstreams' admin does), instead of stopping at the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from streams.broker import BrokerProfile
from streams.errors import BrokerError
from streams.topology import Topology

REQUEST_TIMEOUT = 30.0
# Apache Kafka's rule. Tansu accepts any name (it created "bad name!"), so we check
# here to refuse the same names on every broker.
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


@dataclass(frozen=True)
class TopicWanted:
    """One topic as the topology wants it; ``name`` is the physical (namespaced) name."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicFailure:
    topic: str
    reason: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.reason}"


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply_topics`` did to each topic; ``warnings`` never block a start."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[TopicFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        counts = f"topics: {len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"
        return "\n".join([counts, *(f"warning: {w}" for w in self.warnings)])


def apply_topics(profile: BrokerProfile, topics: Sequence[TopicWanted]) -> ApplyReport:
    """Create, grow and reconfigure ``topics``; BrokerError listing every topic that failed."""
    admin = AdminClient(profile.admin_config())
    existing = _describe_partitions(admin)
    failures = {t.name: problem for t in topics if (problem := _problem(t, existing.get(t.name)))}
    missing = [t for t in topics if t.name not in failures and t.name not in existing]
    present = [t for t in topics if t.name not in failures and t.name in existing]
    failures |= _create(admin, missing)
    grown, grow_failures = _grow(admin, [t for t in present if existing[t.name][0] < t.partitions])
    altered, alter_failures, warnings = _reconfigure(admin, present)
    report = ApplyReport(warnings=warnings + _replication_warnings(present, existing))
    for wanted in topics:
        if reason := failures.get(wanted.name) or grow_failures.get(wanted.name) or alter_failures.get(wanted.name):
            report.failed.append(TopicFailure(wanted.name, reason))
        elif wanted in missing:
            report.created.append(wanted.name)
        elif wanted.name in grown | altered:
            report.updated.append(wanted.name)
        else:
            report.unchanged.append(wanted.name)
    if report.failed:
        listed = "\n".join(f"  {failure}" for failure in report.failed)
        raise BrokerError(f"{len(report.failed)} of {len(topics)} topics could not be applied at {profile.bootstrap}:\n{listed}")
    return report


def list_topics(profile: BrokerProfile) -> dict[str, int]:
    """Topic name → partition count, without the broker's internal ``__`` topics."""
    return {name: partitions for name, (partitions, _) in _describe_partitions(AdminClient(profile.admin_config())).items()}


def delete_topics(profile: BrokerProfile, names: Iterable[str]) -> None:
    """Delete ``names``; topics already gone are fine. BrokerError lists every other failure."""
    names = list(names)
    if not names:
        return
    admin = AdminClient(profile.admin_config())
    errors = _errors(admin.delete_topics(names, request_timeout=REQUEST_TIMEOUT))
    failures = [f"  {name}: {error.str()}" for name, error in errors.items() if error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART]
    if failures:
        raise BrokerError(f"{len(failures)} topics could not be deleted at {profile.bootstrap}:\n" + "\n".join(failures))


def _describe_partitions(admin: AdminClient) -> dict[str, tuple[int, int]]:
    """Topic name → (partitions, replication) from the cluster metadata."""
    try:
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT)
    except KafkaException as exc:
        raise BrokerError(f"cannot list topics: {exc.args[0]}") from exc
    return {
        name: (len(topic.partitions), min((len(p.replicas) for p in topic.partitions.values()), default=0))
        for name, topic in metadata.topics.items()
        if not name.startswith("__")
    }


def _problem(wanted: TopicWanted, current: tuple[int, int] | None) -> str | None:
    if not _LEGAL_NAME.fullmatch(wanted.name) or wanted.name in (".", ".."):
        return "not a legal topic name: use at most 249 of a-z, A-Z, 0-9, '.', '_', '-'"
    if wanted.partitions < 1 or wanted.replication < 1:
        return f"needs at least 1 partition and 1 replica, not {wanted.partitions} and {wanted.replication}"
    if current is not None and current[0] > wanted.partitions:
        return (
            f"has {current[0]} partitions, the topology wants {wanted.partitions}: Kafka cannot remove "
            f"partitions; set partitions: {current[0]} in topology.yaml, or delete the topic (its records "
            f"are lost) and apply again"
        )
    return None


def _create(admin: AdminClient, missing: Sequence[TopicWanted]) -> dict[str, str]:
    if not missing:
        return {}
    new = [NewTopic(t.name, t.partitions, t.replication, config=dict(t.config)) for t in missing]
    return {name: error.str() for name, error in _errors(admin.create_topics(new, request_timeout=REQUEST_TIMEOUT)).items()}


def _grow(admin: AdminClient, short: Sequence[TopicWanted]) -> tuple[set[str], dict[str, str]]:
    """Add partitions; (topics grown, topic → reason it could not grow)."""
    if not short:
        return set(), {}
    futures = admin.create_partitions([NewPartitions(t.name, t.partitions) for t in short], request_timeout=REQUEST_TIMEOUT)
    failures = {name: _grow_failure(error) for name, error in _errors(futures).items()}
    return {t.name for t in short} - failures.keys(), failures


def _grow_failure(error: KafkaError) -> str:
    if error.code() == KafkaError._UNSUPPORTED_FEATURE:
        # Tansu 0.6.0 has no CreatePartitions (pinned by test_admin.py).
        return (
            "the broker cannot add partitions (it lacks CreatePartitions, as the embedded broker does): "
            "delete the topic (its records are lost) and apply again"
        )
    return error.str()


def _reconfigure(admin: AdminClient, present: Sequence[TopicWanted]) -> tuple[set[str], dict[str, str], list[str]]:
    """Set differing configs; (topics changed, topic → reason it could not change, warnings)."""
    differing = _differing_configs(admin, [t for t in present if t.config])
    if not differing:
        return set(), {}, []
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()],
        )
        for name, config in differing.items()
    ]
    futures = admin.incremental_alter_configs(resources, request_timeout=REQUEST_TIMEOUT)
    errors = _errors({resource.name: future for resource, future in futures.items()})
    unsupported = {name for name, error in errors.items() if error.code() == KafkaError._UNSUPPORTED_FEATURE}
    warnings = [f"{name}: the broker cannot change topic configs; {differing[name]} not applied" for name in unsupported]
    failures = {name: error.str() for name, error in errors.items() if name not in unsupported}
    return set(differing) - errors.keys(), failures, warnings


def _differing_configs(admin: AdminClient, topics: Sequence[TopicWanted]) -> dict[str, dict[str, str]]:
    """Topic → the wanted config entries whose current value differs."""
    if not topics:
        return {}
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t.name) for t in topics], request_timeout=REQUEST_TIMEOUT)
    current = {resource.name: future for resource, future in futures.items()}
    differing: dict[str, dict[str, str]] = {}
    for wanted in topics:
        try:
            entries = current[wanted.name].result()
        except KafkaException as exc:
            raise BrokerError(f"cannot read the configs of topic {wanted.name!r}: {exc.args[0]}") from exc
        changes = {k: v for k, v in wanted.config.items() if k not in entries or entries[k].value != v}
        if changes:
            differing[wanted.name] = changes
    return differing


def _replication_warnings(present: Sequence[TopicWanted], existing: Mapping[str, tuple[int, int]]) -> list[str]:
    return [
        f"{t.name}: has replication {existing[t.name][1]}, the topology wants {t.replication}; "
        f"change it with Kafka's partition reassignment tool"
        for t in present
        if existing[t.name][1] != t.replication
    ]


def _errors(futures: Mapping[str, Future[Any]]) -> dict[str, KafkaError]:
    """Name → error for every future that failed; library exceptions stop here."""
    errors: dict[str, KafkaError] = {}
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            errors[name] = exc.args[0]
    return errors


def topics_wanted(topology: Topology) -> list[TopicWanted]:
    """Every topic the topology needs (dead-letter topics included), by physical name."""
    return [
        TopicWanted(topology.topic_name(spec.name), spec.partitions, spec.replication, spec.kafka_config())
        for spec in topology.all_topics()
    ]
