"""The metrics component: Airflow's statsd (UDP) in, Prometheus /metrics out, via prometheus_client.

A drop-in for the official statsd_exporter (same flags, same mapping format, same own metrics),
which Debian 12 does not package. Run as
`python -m airflow_resource.daemons.metrics --statsd.listen-udp 127.0.0.1:49125 --web.listen-address
127.0.0.1:49102 --statsd.mapping-config statsd_mapping.yml`; `--check-config` validates the
mapping file and exits. With APACHE_AIRFLOW_METRICS_BROKER_URL set (the Celery broker, Redis) it
also serves the Celery queue length and the number of workers answering a ping, which Airflow's
own statsd does not carry.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from airflow_resource.stack import broker
from airflow_resource.daemons.metrics import BROKER_ENV, MAPPING_FILE, mapping
from airflow_resource.daemons.metrics.mapping import COUNTER, GAUGE, OBSERVER, Mapper

log = logging.getLogger("airflow_resource.daemons.metrics")
WORKER_PING_INTERVAL_S = 15.0
UDP_BUFFER = 65535
STATSD_TYPES = {"c": COUNTER, "g": GAUGE, "ms": OBSERVER, "h": OBSERVER, "d": OBSERVER}


class StatsdExporter:
    """Maps statsd events to prometheus_client metrics in one registry."""

    def __init__(self, mapper: Mapper, registry: CollectorRegistry | None = None):
        self.mapper = mapper
        self.registry = registry or CollectorRegistry()
        self._lock = threading.Lock()
        self._families: dict[str, tuple[str, tuple[str, ...], Any]] = {}
        r = self.registry
        self.lines = Counter("statsd_exporter_lines", "statsd lines received.", registry=r)
        self.packets = Counter("statsd_exporter_udp_packets", "statsd UDP packets received.", registry=r)
        self.events = Counter("statsd_exporter_events", "statsd events by type.", ["type"], registry=r)
        self.unmapped = Counter("statsd_exporter_events_unmapped", "statsd events no mapping matched.", registry=r)
        self.dropped = Counter("statsd_exporter_events_dropped", "statsd events a drop rule matched.", registry=r)
        self.invalid = Counter("statsd_exporter_lines_invalid", "statsd lines that could not be parsed.", registry=r)
        self.conflicts = Counter("statsd_exporter_events_conflict",
                                 "statsd events dropped: their family exists with another type or label set.",
                                 ["type"], registry=r)

    # ---- statsd input
    def handle_packet(self, data: bytes) -> None:
        self.packets.inc()
        for line in data.decode("utf-8", errors="replace").splitlines():
            if line.strip():
                self.handle_line(line.strip())

    def handle_line(self, line: str) -> None:
        self.lines.inc()
        try:
            name, rest = line.split(":", 1)
            fields = rest.split("|")
            raw, kind = fields[0], fields[1]
            rate = 1.0
            for extra in fields[2:]:
                if extra.startswith("@"):
                    rate = float(extra[1:])
            metric_type = STATSD_TYPES[kind]
            value = float(raw)
            if not name or rate <= 0:
                raise ValueError(line)
        except (ValueError, IndexError, KeyError):
            self.invalid.inc()
            return
        relative = metric_type == GAUGE and raw[:1] in "+-"
        self.observe(name, metric_type, value, rate, relative)

    def observe(self, name: str, metric_type: str, value: float, rate: float = 1.0, relative: bool = False) -> None:
        self.events.labels(metric_type).inc()
        mapped = self.mapper.map(name, metric_type)
        if mapped is None:
            self.dropped.inc()
            return
        if mapped.rule is None:
            self.unmapped.inc()
        if not mapping.NAME_RE.match(mapped.name):
            self.invalid.inc()
            return
        metric = self._family(mapped, metric_type)
        if metric is None:
            self.conflicts.labels(metric_type).inc()
            return
        child = metric.labels(**mapped.labels) if mapped.labels else metric
        if metric_type == COUNTER:
            if value >= 0:
                child.inc(value / rate)
        elif metric_type == GAUGE:
            child.inc(value) if relative else child.set(value)
        else:
            child.observe(value / 1000.0)  # statsd timers are milliseconds; Prometheus wants seconds

    def _family(self, mapped: mapping.Mapped, metric_type: str) -> Any:
        labelnames = tuple(sorted(mapped.labels))
        with self._lock:
            known = self._families.get(mapped.name)
            if known is not None:
                kind, names, metric = known
                return metric if (kind, names) == (metric_type, labelnames) else None
            rule = mapped.rule
            doc = (rule.help if rule and rule.help else f"Airflow statsd metric {mapped.name}")
            try:
                if metric_type == COUNTER:
                    metric = Counter(mapped.name, doc, labelnames, registry=self.registry)
                elif metric_type == GAUGE:
                    metric = Gauge(mapped.name, doc, labelnames, registry=self.registry)
                elif mapped.observer_type == "summary":
                    metric = Summary(mapped.name, doc, labelnames, registry=self.registry)
                else:
                    buckets = (rule.buckets if rule else ()) or self.mapper.default_buckets
                    metric = Histogram(mapped.name, doc, labelnames, registry=self.registry,
                                       **({"buckets": buckets} if buckets else {}))
            except ValueError:  # name taken by another family (e.g. x and x_total)
                return None
            self._families[mapped.name] = (metric_type, labelnames, metric)
            return metric


class CeleryCollector(Collector):
    """Celery queue length (Redis list lengths, read at scrape time) and workers answering a ping."""

    def __init__(self, broker_url: str):
        import redis  # installed with Airflow's redis provider

        self.broker_url = broker_url
        self.redis = redis.Redis.from_url(broker_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.workers: float | None = None
        threading.Thread(target=self._ping_loop, name="celery-ping", daemon=True).start()

    def _ping_loop(self) -> None:
        from celery import Celery

        app = Celery(broker=self.broker_url)
        app.conf.broker_connection_retry_on_startup = False
        while True:
            try:
                replies = app.control.ping(timeout=1.0) or []
                self.workers = float(len({name for reply in replies for name in reply}))
            except Exception as exc:  # noqa: BLE001 - the broker may be down; report no value
                log.debug("celery ping failed: %s", exc)
                self.workers = None
            time.sleep(WORKER_PING_INTERVAL_S)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        queue = GaugeMetricFamily("airflow_celery_queue_length", "Tasks waiting in the Celery broker queue.",
                                  labels=["queue"])
        try:
            for q, length in broker.queue_lengths(self.redis).items():
                queue.add_metric([q], float(length))
            yield queue
        except Exception as exc:  # noqa: BLE001 - broker down: no sample rather than a failed scrape
            log.debug("queue length unavailable: %s", exc)
        if self.workers is not None:
            yield GaugeMetricFamily("airflow_celery_workers", "Celery workers answering a ping.", value=self.workers)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(exporter: StatsdExporter, udp: tuple[str, int], web: tuple[str, int]) -> None:
    sock = socket.socket(socket.AF_INET6 if ":" in udp[0] else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(udp)  # UDP first: statsd sent before the HTTP side is up is not lost
    start_http_server(web[1], addr=web[0], registry=exporter.registry)
    log.info("statsd on udp %s:%d, /metrics on http://%s:%d", *udp, *web)
    while True:
        data, _ = sock.recvfrom(UDP_BUFFER)
        try:
            exporter.handle_packet(data)
        except Exception:  # noqa: BLE001 - one bad packet never stops the exporter
            log.exception("packet failed")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m airflow_resource.daemons.metrics", description=__doc__.split("\n")[0])
    p.add_argument("--statsd.listen-udp", dest="udp", default="127.0.0.1:9125")
    p.add_argument("--web.listen-address", dest="web", default="127.0.0.1:9102")
    p.add_argument("--statsd.mapping-config", dest="mapping", default=str(MAPPING_FILE))
    p.add_argument("--check-config", action="store_true", help="validate the mapping file and exit")
    p.add_argument("--log.level", dest="level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        mapper = mapping.load(Path(args.mapping))
    except mapping.MappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check_config:
        print(f"{args.mapping}: {len(mapper.rules)} mappings ok")
        return 0
    disable_created_metrics()  # no *_created series: they double every counter for no use here
    exporter = StatsdExporter(mapper)
    broker = os.environ.get(BROKER_ENV)
    if broker:
        exporter.registry.register(CeleryCollector(broker))
    serve(exporter, _host_port(args.udp), _host_port(args.web))
    return 0
