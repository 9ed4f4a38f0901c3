"""How the services are built from settings: the adapters each service gets.

Imported only when ``core.bootstrap`` builds the services, on the first invocation, never
when ``function_app`` is imported: every module here costs cold start (dataclasses alone
take a millisecond or two each to create).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from core.adapters.blob_store import AzureBlobStore
from core.adapters.table_store import TableStateStore
from core.alerting import Alerting
from core.alerting.sources import MetricsSource
from core.events import (
    BlobCreated,
    DatasetDriftDetected,
    Event,
    ModelDeployed,
    ModelRegistered,
    RunCompleted,
    RunStatusChanged,
)
from core.feedback.collected import CollectedInputs
from core.feedback.drift_check import DriftCheck, RecentInputs
from core.feedback.quality import LiveQuality
from core.intake import EventContext, EventHandler, Intake, Triage
from core.ledger import Ledger
from core.logs import configure
from core.ml_platform import MLPlatform, ServingPlatform
from core.ports import BlobStore, Clock, StateStore, utcnow
from core.release.service import Releases
from core.release.store import ReleaseStore
from core.retraining import Retraining
from core.settings import Settings

if TYPE_CHECKING:
    from core.notify.outbox import Outbox
    from core.publish.publisher import Publisher
from core.sources import SourcePolicy


@dataclass
class Services:
    settings: Settings
    store: StateStore
    blobs: BlobStore
    ledger: Ledger
    intake: Intake
    retraining: Retraining
    platform: MLPlatform
    outbox: Outbox
    alerting: Alerting
    serving: ServingPlatform
    releases: Releases
    publisher: Publisher | None  # our own events; None when no topic is configured
    quality: LiveQuality | None
    drift: DriftCheck


def build(settings: Settings, *, store: StateStore | None = None, blobs: BlobStore | None = None,
          platform: MLPlatform | None = None, serving: ServingPlatform | None = None,
          inputs: RecentInputs | None = None, clock: Clock = utcnow) -> Services:
    store = store or TableStateStore.from_connection(settings.storage_connection, settings.storage_account)
    blobs = blobs or AzureBlobStore.from_connection(settings.storage_connection, settings.storage_account)
    ledger = Ledger(store, blobs, prefix=settings.table_prefix, container=settings.internal_container,
                    clock=clock, lease_seconds=settings.claim_lease_seconds)
    sources = SourcePolicy(settings.storage_event_sources, settings.ml_event_sources)
    configure(settings.log_level)
    guarded = platform  # a platform the caller passes is used as it is
    if platform is None:
        platform = _platform(settings, store, blobs)
        guarded = _outage_guard(settings, store, platform)
    alerting_ref: list[Alerting] = []  # releases raise incidents through alerting, which rolls releases back
    retraining = Retraining(store, ledger, guarded, settings.retrain_policies, prefix=settings.table_prefix,
                            clock=clock, code_version=settings.code_version,
                            incident=lambda *a: alerting_ref[0].incident(*a))  # failed jobs are incidents
    serving = serving or _serving(settings, blobs)
    releases = Releases(ReleaseStore(store, settings.table_prefix), ledger, serving, settings.release_policies,
                        clock=clock, lease_seconds=settings.claim_lease_seconds,
                        incident=lambda *a: alerting_ref[0].incident(*a))
    quality = LiveQuality(store, blobs, ledger, prefix=settings.table_prefix,
                          labels_container=settings.labels_container, collect_container=settings.collect_container,
                          lookback_hours=settings.labels_lookback_hours,
                          window_hours=settings.live_quality_window_hours, clock=clock)
    on_blob, blob_triage = _blob_created(retraining, quality)
    handlers: dict[type[Event], EventHandler] = {
        BlobCreated: on_blob, DatasetDriftDetected: retraining.on_drift,
        RunStatusChanged: retraining.on_run_event, RunCompleted: retraining.on_run_event,
        ModelRegistered: releases.on_model_registered, ModelDeployed: releases.on_model_deployed}
    # what each handler would do nothing for, known from the event alone (one write each)
    triage: dict[type[Event], Triage] = {
        BlobCreated: blob_triage,
        DatasetDriftDetected: retraining.ignored, RunStatusChanged: retraining.ignored,
        RunCompleted: retraining.ignored, ModelRegistered: releases.ignored, ModelDeployed: releases.ignored}
    from core.notify.outbox import Outbox  # the sender brings requests: first use, not cold start
    from core.notify.send import Sender

    outbox = Outbox(store, ledger, prefix=settings.table_prefix, routes=settings.notify_routes, clock=clock,
                    send=Sender(timeout=10),  # the outbox's 60 s lease outlasts the 10 s timeout
                    retention=timedelta(hours=settings.outbox_retention_hours))
    alerting = Alerting(store, ledger, outbox, _metrics_source(settings, store, ledger, quality, releases),
                        settings.alert_rules,
                        prefix=settings.table_prefix, clock=clock, retrain=retraining.request,
                        rollback=lambda model, reason: releases.rollback(model, "alerting", None, reason))
    alerting_ref.append(alerting)
    publisher = _publisher(settings, store, ledger, clock)
    return Services(settings, store, blobs, ledger, Intake(ledger, sources, handlers, triage=triage), retraining,
                    platform, outbox, alerting, serving, releases, publisher, quality,
                    _drift(settings, store, blobs, ledger, inputs or CollectedInputs(blobs, settings.collect_container),
                           clock))


def _drift(settings: Settings, store: StateStore, blobs: BlobStore, ledger: Ledger, inputs: RecentInputs,
           clock: Clock) -> DriftCheck:
    """The local drift check; production inputs come from the collected inference data (or ``inputs``, tests)."""
    from core.adapters.local_eventgrid import EventGridEmulator
    from core.adapters.local_ml import ML_TOPIC, models_container
    from core.adapters.model_baselines import BlobBaselines

    emulator = EventGridEmulator(settings.local_eventgrid_url)
    return DriftCheck(store, ledger, ReleaseStore(store, settings.table_prefix),
                      BlobBaselines(blobs, models_container(settings.table_prefix)), inputs,
                      lambda events: all(d.ok for d in emulator.publish(events)), settings.drift_monitors,
                      endpoints={m: p.prod_endpoint for m, p in settings.release_policies.items()},
                      prefix=settings.table_prefix, topic=ML_TOPIC, clock=clock,
                      enabled=settings.drift_check == "local")


def _blob_created(retraining: Retraining, quality: LiveQuality) -> tuple[EventHandler, Triage]:
    """New blobs, handler and triage: late labels go to live quality, everything else to retraining
    (which ignores what feeds no model)."""
    def handle(event: Event, ctx: EventContext) -> Mapping[str, Any]:
        return quality.on_labels(event, ctx) if quality.handles(event) else retraining.on_blob_created(event, ctx)

    def triage(event: Event) -> Mapping[str, Any] | None:
        return None if quality.handles(event) else retraining.ignored(event)

    return handle, triage


def _publisher(settings: Settings, store: StateStore, ledger: Ledger, clock: Clock) -> Publisher | None:
    """Our own events, read off the audit trail into an outbox of their own (core/publish)."""
    if not settings.events_topic_endpoint:
        return None
    from core.adapters.eventgrid_publish import EventGridSend  # the SDK itself loads on the first publish
    from core.notify.outbox import Outbox
    from core.publish import publisher as pub
    from core.publish.sweep import Sweep

    prefix = pub.table_prefix(settings.table_prefix)
    outbox = Outbox(store, ledger, prefix=prefix, clock=clock,
                    routes=pub.topic_routes(settings.events_topic_endpoint, settings.events_topic_key),
                    send=EventGridSend(settings.events_topic_endpoint, settings.events_topic_key, timeout=10),
                    build=pub.build_request)
    publisher = pub.Publisher(outbox, Sweep(store, ledger, outbox, prefix=prefix, clock=clock),
                              source=settings.events_source)
    ledger.on_audit = publisher.observe
    return publisher


def _metrics_source(settings: Settings, store: StateStore, ledger: Ledger, quality: LiveQuality,
                    releases: Releases) -> MetricsSource:
    if settings.alerts_source == "azure":
        from core.adapters.azure_monitor import AzureMonitorSource  # its SDKs load on the first query

        return AzureMonitorSource(metrics_endpoint=settings.alerts_metrics_endpoint,
                                  max_concurrency=settings.alerts_max_concurrency)
    from core.adapters.local_metrics import FailedJobs, LocalSource, online_endpoint_metrics
    from core.feedback.metrics import METRICS as LIVE_METRICS
    from core.feedback.metrics import LiveQualitySource

    def production(model: str) -> str | None:
        return releases.store.facts(model).value.champion_version or None

    live = LiveQualitySource(quality, settings.release_policies.keys() | settings.retrain_policies.keys(),
                             production)
    # metric name -> provider: another local metric is one more entry here
    metrics = {**online_endpoint_metrics(settings.local_serving_url),
               **dict.fromkeys(LIVE_METRICS, live.query_metrics)}
    return LocalSource(metrics, [FailedJobs(store, ledger.audit_table)])


def _platform(settings: Settings, store: StateStore, blobs: BlobStore) -> MLPlatform:
    """The ML platform adapter named by the settings. Both are cheap to construct: the Azure one
    builds its MLClient (and imports azure.ai.ml) on its first call, not here."""
    if settings.ml_platform == "azure":
        from core.adapters.azure_ml import AzureMLPlatform

        return AzureMLPlatform.from_settings(**settings.aml)
    from core.adapters.local_eventgrid import EventGridEmulator
    from core.adapters.local_ml import LocalMLPlatform

    # start(): jobs a killed host left are resumed, as Azure ML's would have run on without it
    return LocalMLPlatform(store, blobs, EventGridEmulator(settings.local_eventgrid_url).publish,
                           prefix=settings.table_prefix, attempts=settings.local_job_attempts).start()


def _outage_guard(settings: Settings, store: StateStore, platform: MLPlatform) -> MLPlatform:
    """Locally, the platform as retraining calls it goes through the outage switch (``local_outage``),
    so a test can make it fail as Azure ML would; in Azure it is the platform itself."""
    if settings.ml_platform == "azure":
        return platform
    from core.adapters.local_outage import OutageGuard, OutageSwitch

    return OutageGuard(platform, OutageSwitch(store, settings.table_prefix))


def _serving(settings: Settings, blobs: BlobStore) -> ServingPlatform:
    """Online endpoints: Azure ML's (SDK imported on first call), or the local control plane's."""
    if settings.ml_platform == "azure":
        from core.adapters.azure_serving import AzureServing

        return AzureServing.from_settings(**settings.aml, metrics_endpoint=settings.alerts_metrics_endpoint)
    from core.adapters.local_serving import LocalServing

    return LocalServing(settings.local_serving_url, blobs, prefix=settings.table_prefix)
