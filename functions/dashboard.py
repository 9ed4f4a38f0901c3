"""GET /api/dashboard: the status page for a browser (the key as ?code=, which its script reuses)."""

from __future__ import annotations

import azure.functions as func

from core import bootstrap
from core.admin.auth import Principal
from functions.admin import guarded

bp = func.Blueprint()


def _page(_: Principal) -> func.HttpResponse:
    from core.admin import audit, deadletters, page, status  # on call: cold start must not pay for them

    s = bootstrap.services()
    recent = audit.query(s.ledger, audit.AuditQuery({}, limit=50))
    html = page.render(status.status(s.ledger, s.retraining, s.platform, s.releases, s.alerting, s.outbox,
                                     s.quality), recent,
                       deadletters.listing(s.ledger, {}), [r.view() for r in s.releases.find()])
    return func.HttpResponse(html, status_code=200, mimetype="text/html", charset="utf-8",
                             headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                      "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                      "style-src 'unsafe-inline'; connect-src 'self'"})


@bp.function_name("admin_dashboard")
@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    return guarded(req, "dashboard", _page)
