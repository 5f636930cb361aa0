"""statsd_exporter's mapping format (the subset Airflow's Helm chart uses), loaded and matched.

A mapping file has `defaults` (observer_type, buckets) and `mappings`, each with `match` (a glob
where `*` stands for one dot-free part, or a regex with `match_type: regex`), `name`, `labels`
with `$N` substitutions, optional `match_metric_type` (counter|gauge|observer), `observer_type`
(histogram|summary), `buckets` and `action` (map|drop). The first mapping that matches wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COUNTER, GAUGE, OBSERVER = "counter", "gauge", "observer"
METRIC_TYPES = (COUNTER, GAUGE, OBSERVER)
OBSERVER_TYPES = ("histogram", "summary")
NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SUBST = re.compile(r"\$\{?(\d+)\}?")
_MAPPING_KEYS = {"match", "match_type", "name", "labels", "match_metric_type", "observer_type", "timer_type",
                 "buckets", "action", "help"}


class MappingError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    name: str
    labels: dict[str, str]
    metric_type: str | None = None   # only statsd events of this type match
    observer_type: str = "histogram"
    buckets: tuple[float, ...] = ()
    drop: bool = False
    help: str = ""


@dataclass(frozen=True)
class Mapped:
    name: str
    labels: dict[str, str]
    rule: Rule | None = None   # None: no rule matched, the name is the escaped statsd name

    @property
    def observer_type(self) -> str:
        return self.rule.observer_type if self.rule else "histogram"


@dataclass
class Mapper:
    rules: list[Rule] = field(default_factory=list)
    default_buckets: tuple[float, ...] = ()
    default_observer: str = "histogram"

    def map(self, statsd_name: str, metric_type: str) -> Mapped | None:
        """The Prometheus name and labels of one statsd metric; None when a drop rule matches."""
        for rule in self.rules:
            if rule.metric_type and rule.metric_type != metric_type:
                continue
            m = rule.pattern.search(statsd_name)
            if not m:
                continue
            if rule.drop:
                return None
            groups = m.groups()

            def sub(text: str) -> str:
                return _SUBST.sub(lambda g: groups[int(g.group(1)) - 1] if 0 < int(g.group(1)) <= len(groups) else "",
                                  text)
            return Mapped(sub(rule.name), {k: sub(v) for k, v in rule.labels.items()}, rule)
        return Mapped(escape(statsd_name), {})


def escape(name: str) -> str:
    """statsd_exporter's escaping of an unmapped name: anything not [a-zA-Z0-9_] becomes '_'."""
    out = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return "_" + out if out[:1].isdigit() else out


def glob_to_regex(glob: str) -> re.Pattern[str]:
    parts = (re.escape(p) for p in glob.split("*"))
    return re.compile("^" + "([^.]+)".join(parts) + "$")


def _buckets(raw: Any, where: str) -> tuple[float, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(b, (int, float)) for b in raw):
        raise MappingError(f"{where}: buckets must be a non-empty list of numbers")
    if list(raw) != sorted(raw):
        raise MappingError(f"{where}: buckets must be in increasing order")
    return tuple(float(b) for b in raw)


def parse(data: Any) -> Mapper:
    """A Mapper from the parsed YAML; every mistake statsd_exporter would refuse is a MappingError."""
    if not isinstance(data, dict) or not isinstance(data.get("mappings"), list):
        raise MappingError("a mapping file is a mapping with a `mappings` list")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise MappingError("defaults must be a mapping")
    default_observer = defaults.get("observer_type", defaults.get("timer_type", "histogram"))
    if default_observer not in OBSERVER_TYPES:
        raise MappingError(f"defaults: observer_type {default_observer!r} is not one of {OBSERVER_TYPES}")
    default_buckets = _buckets(defaults.get("buckets"), "defaults")
    mapper = Mapper(default_buckets=default_buckets, default_observer=default_observer)
    for i, m in enumerate(data["mappings"], 1):
        where = f"mapping {i}"
        if not isinstance(m, dict):
            raise MappingError(f"{where}: must be a mapping")
        unknown = set(m) - _MAPPING_KEYS
        if unknown:
            raise MappingError(f"{where}: unknown key(s) {sorted(unknown)}")
        match, name = m.get("match"), m.get("name")
        if not isinstance(match, str) or not match:
            raise MappingError(f"{where}: match is required")
        where = f"mapping {i} ({match})"
        action = m.get("action", "map")
        if action not in ("map", "drop"):
            raise MappingError(f"{where}: action must be map or drop")
        if not isinstance(name, str) or not name:
            raise MappingError(f"{where}: name is required")
        match_type = m.get("match_type", "glob")
        if match_type == "glob":
            if not re.fullmatch(r"[a-zA-Z0-9_.*\-]+", match):
                raise MappingError(f"{where}: invalid glob (letters, digits, _ - . and * only)")
            pattern = glob_to_regex(match)
        elif match_type == "regex":
            try:
                pattern = re.compile(match)
            except re.error as exc:
                raise MappingError(f"{where}: invalid regex: {exc}") from None
        else:
            raise MappingError(f"{where}: match_type must be glob or regex")
        labels = m.get("labels") or {}
        if not isinstance(labels, dict):
            raise MappingError(f"{where}: labels must be a mapping")
        for key in labels:
            if not isinstance(key, str) or not LABEL_RE.match(key) or key.startswith("__"):
                raise MappingError(f"{where}: invalid label name {key!r}")
        if action == "map" and not _SUBST.search(name) and not NAME_RE.match(name):
            raise MappingError(f"{where}: invalid metric name {name!r}")
        metric_type = m.get("match_metric_type")
        if metric_type is not None and metric_type not in METRIC_TYPES:
            raise MappingError(f"{where}: match_metric_type must be one of {METRIC_TYPES}")
        observer = m.get("observer_type", m.get("timer_type", default_observer))
        if observer not in OBSERVER_TYPES:
            raise MappingError(f"{where}: observer_type must be one of {OBSERVER_TYPES}")
        mapper.rules.append(Rule(
            pattern, name, {str(k): str(v) for k, v in labels.items()}, metric_type, observer,
            _buckets(m.get("buckets"), where) or default_buckets, action == "drop", str(m.get("help", "")),
        ))
    return mapper


def load(path: Path) -> Mapper:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise MappingError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"{path} is not valid YAML: {exc}") from None
    return parse(data)


def family_names(mapper: Mapper) -> dict[str, str]:
    """Prometheus family name -> kind (counter|gauge|observer|any) of every mapping rule with a fixed name."""
    out: dict[str, str] = {}
    for r in mapper.rules:
        if not r.drop and not _SUBST.search(r.name):
            out[r.name] = r.metric_type or "any"
    return out
