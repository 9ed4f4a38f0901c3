"""The status page: one self-contained HTML document (no external assets, no build step).

The server embeds the current status, releases, audit trail and dead letters as JSON, so the
page shows them at once (and in a screenshot); a small script renders them and fetches them
again every ``REFRESH_SECONDS`` with the same key the page was opened with.

Sections: models (retraining, production version, release in flight, alerts), endpoints with
their traffic split as bars, releases with their step timelines (the newest few expanded),
firing alerts, the dead-letter and notification backlogs, and the recent audit trail.
"""

from __future__ import annotations

import json
from typing import Any

REFRESH_SECONDS = 15
EXPANDED = 3  # the newest releases shown with their timeline open; older ones one click away
SHOWN = 20  # releases listed at all: the page is a glance, `reactor releases` has the rest

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e1e4e8;vertical-align:top}
th{background:#eef1f4;font-weight:600}.muted{color:#57606a}.bad{color:#b42318;font-weight:600}
.ok{color:#1a7f37;font-weight:600}.run{color:#0969da;font-weight:600}#note{float:right}
.bar{display:flex;height:20px;min-width:240px;background:#e1e4e8;border-radius:3px;overflow:hidden}
.seg{color:#fff;font-size:12px;line-height:20px;padding:0 6px;white-space:nowrap;overflow:hidden}
.legend{font-size:12px;margin-top:2px}
details{background:#fff;box-shadow:0 1px 2px #0002;margin:0 0 8px;padding:6px 10px}
summary{cursor:pointer}summary>span{margin-right:14px}details table{box-shadow:none;margin-top:6px}
"""

_SCRIPT = r"""
const code = new URLSearchParams(location.search).get('code') || '';
const COLOURS = ['#0969da', '#8250df', '#bf8700', '#1a7f37', '#cf222e', '#57606a'];
const FAILED = ['qa_failed', 'rejected', 'expired', 'rolled_back'];
const opened = {};  // releases the reader opened or closed: kept that way across refreshes
function el(tag, text, cls) {
  const e = document.createElement(tag);
  e.textContent = text ?? '';
  if (cls) e.className = cls;
  return e;
}
function table(id, heads, rows) {
  const t = typeof id === 'string' ? document.getElementById(id) : id;
  t.replaceChildren();
  const h = t.insertRow();
  heads.forEach(x => h.appendChild(el('th', x)));
  if (!rows.length) {
    const c = t.insertRow().insertCell();
    c.colSpan = heads.length;
    c.append(el('span', 'none', 'muted'));
  }
  rows.forEach(cells => {
    const r = t.insertRow();
    cells.forEach(x => r.insertCell().append(x instanceof Node ? x : el('span', String(x ?? ''))));
  });
  return t;
}
function when(iso) {
  return iso ? String(iso).slice(0, 19).replace('T', ' ') : '-';
}
function split(traffic) {
  const parts = Object.entries(traffic || {}).filter(([, p]) => p).map(([d, p]) => d + ' ' + p + '%');
  return parts.join(' / ') || 'no traffic';
}
function figures(f) {
  return Object.entries(f || {}).map(([k, v]) => k + '=' + (Array.isArray(v) ? v.join(',') :
    (v && typeof v === 'object') ? split(v) : typeof v === 'number' && !Number.isInteger(v) ? +v.toPrecision(4) :
    v)).join(' ');
}
function stateClass(state) {
  return state === 'promoted' ? 'ok' : FAILED.includes(state) ? 'bad' : state === 'superseded' ? 'muted' : 'run';
}
function modelRow(m) {
  const s = m.retrain, last = s.last_outcome || '-';
  const champion = m.champion ? 'v' + m.champion.version : (m.error ? el('span', m.error, 'bad') : '-');
  const prod = m.production && m.production.version ? 'v' + m.production.version : '-';
  const flight = (m.releases_in_flight || []).map(r => r.id + ' ' + r.state).join(', ') || '-';
  const alerts = (m.alerts_firing || []).length;
  return [m.model, champion, m.versions.join(', '), s.window_opened_at || '-', s.pending_files,
          s.in_flight_job || '-', s.last_job || '-', el('span', last, last === 'failed' ? 'bad' : 'ok'), prod, flight,
          el('span', alerts + ' firing', alerts ? 'bad' : 'ok'), liveQuality(m.live_quality)];
}
function liveQuality(q) {
  if (!q) return '-';
  if (q.error) return el('span', q.error, 'bad');
  return q.n ? 'v' + q.version + ': RMSE ' + q.rmse.toFixed(2) + ', MAE ' + q.mae.toFixed(2) + ' (n=' + q.n + ', ' +
               q.window_hours + ' h)'
             : 'v' + q.version + ': no labels yet';
}
function bar(ep) {
  const box = document.createElement('div'), b = el('div', '', 'bar');
  Object.entries(ep.traffic || {}).filter(([, p]) => p).forEach(([d, p], i) => {
    const seg = el('div', d + ' ' + p + '%', 'seg');
    seg.style.width = p + '%';
    seg.style.background = COLOURS[i % COLOURS.length];
    seg.title = d + ': ' + p + '% of requests';
    b.append(seg);
  });
  const mirror = Object.entries(ep.mirror || {}).filter(([, p]) => p).map(([d, p]) => d + ' ' + p + '%');
  box.append(b, el('div', split(ep.traffic) + (mirror.length ? '; mirror ' + mirror.join(', ') : ''), 'legend'));
  return box;
}
function endpointRows(models) {
  const rows = [];
  models.forEach(m => Object.entries(m.endpoints || {}).forEach(([role, ep]) => {
    const traffic = ep.error ? el('span', ep.error, 'bad') : ep.state === 'absent' ? el('span', 'not created yet',
      'muted') : bar(ep);
    rows.push([m.model, role, ep.name, el('span', ep.state || '-', ep.error ? 'bad' : ''), traffic,
               el('span', ep.scoring_uri || '', 'muted')]);
  }));
  return rows;
}
function progress(r) {
  if (r.state === 'promoted') return r.deployment + ' 100%';
  if (r.state !== 'canary') return '';
  if (r.step < 0) return 'mirroring';
  const last = (r.timeline || []).filter(e => e.figures && e.figures.traffic).pop();
  return 'step ' + (r.step + 1) + (last ? ': ' + split(last.figures.traffic) : '');
}
function releaseBox(r, i) {
  const d = document.createElement('details');
  d.open = r.id in opened ? opened[r.id] : i < EXPANDED;
  d.addEventListener('toggle', () => { opened[r.id] = d.open; });
  const s = document.createElement('summary');
  s.append(el('span', r.id), el('span', r.state, stateClass(r.state)), el('span', progress(r)),
           el('span', 'updated ' + when(r.updated_at), 'muted'), el('span', r.reason || '', 'bad'));
  const t = table(document.createElement('table'), ['At', 'State', 'Note', 'Figures'],
    (r.timeline || []).map(e => [when(e.at), el('span', e.state, stateClass(e.state)), e.note, figures(e.figures)]));
  d.append(s, t);
  return d;
}
function releases(list) {
  const box = document.getElementById('releases');
  box.replaceChildren(...list.slice(0, SHOWN).map(releaseBox));
  if (!list.length) box.append(el('div', 'none', 'muted'));
  if (list.length > SHOWN) box.append(el('div', (list.length - SHOWN) + ' older: reactor releases', 'muted'));
}
function alertRows(models) {
  return models.flatMap(m => (m.alerts_firing || []).map(a => [m.model, el('span', a.alertname, 'bad'), a.severity,
    when(a.since), a.summary]));
}
function count(id, n, unit) {
  const e = document.getElementById(id);
  e.textContent = n === undefined ? 'unknown' : n + ' ' + unit;
  e.className = n ? 'bad' : 'ok';
}
function render(d) {
  const models = d.status.models;
  table('models', ['Model', 'Champion', 'Versions', 'Window opened', 'Pending files', 'In-flight job', 'Last job',
                   'Last outcome', 'Production', 'Release in flight', 'Alerts', 'Live quality'], models.map(modelRow));
  table('endpoints', ['Model', 'Role', 'Endpoint', 'State', 'Traffic', 'Scoring URI'], endpointRows(models));
  releases(d.releases || []);
  table('alerts', ['Model', 'Alert', 'Severity', 'Since', 'Summary'], alertRows(models));
  count('backlog', d.status.dead_letters.pending, 'pending');
  count('outbox', (d.status.outbox || {}).pending, 'pending');
  table('audit', ['At', 'Action', 'Model', 'Version', 'Event', 'Actor', 'Correlation'],
    d.audit.slice().reverse().map(r => [r.at, r.action, r.model, r.version, r.event_id, r.actor, r.correlation_id]));
  table('letters', ['Id', 'Function', 'Reason', 'Field', 'Received', 'Status'],
    d.deadletters.map(l => [l.id, l.function, l.reason, l.field, l.received_at, l.status]));
  const note = document.getElementById('note');
  note.textContent = 'updated ' + new Date().toLocaleTimeString();
  note.className = 'muted';
}
async function get(path) {
  const url = '/api/' + path + (code ? (path.includes('?') ? '&' : '?') + 'code=' + encodeURIComponent(code) : '');
  const r = await fetch(url, {headers: {'Accept': 'application/json'}});
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}
async function refresh() {
  try {
    const [status, audit, letters, rel] = await Promise.all([get('status'), get('audit?limit=50'),
                                                             get('deadletters'), get('releases')]);
    render({status, audit: audit.records, deadletters: letters.dead_letters, releases: rel.releases});
  } catch (e) {
    const note = document.getElementById('note');
    note.textContent = 'refresh failed: ' + e.message;
    note.className = 'bad';
  }
}
render(JSON.parse(document.getElementById('data').textContent));
setInterval(refresh, REFRESH_MS);
"""


def render(status: dict[str, Any], audit: list[dict[str, Any]], deadletters: list[dict[str, Any]],
           releases: list[dict[str, Any]] | None = None) -> str:
    data = json.dumps({"status": status, "audit": audit, "deadletters": deadletters, "releases": releases or []},
                      default=str)
    # The JSON sits inside <script>: no "</script>" or "<!--" may appear in it, whatever the data says.
    safe = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script = f"const REFRESH_MS = {REFRESH_SECONDS * 1000}, EXPANDED = {EXPANDED}, SHOWN = {SHOWN};\n{_SCRIPT}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>mlops-reactor status</title>
<style>{_STYLE}</style></head>
<body><span id="note" class="muted"></span><h1>mlops-reactor</h1>
<div class="muted">models, endpoints, releases, alerts, backlogs and the audit trail; refreshes every
{REFRESH_SECONDS} s</div>
<h2>Models</h2><table id="models"></table>
<h2>Endpoints</h2><table id="endpoints"></table>
<h2>Releases</h2><div id="releases"></div>
<h2>Firing alerts</h2><table id="alerts"></table>
<h2>Dead letters <span id="backlog"></span></h2><table id="letters"></table>
<h2>Notification outbox <span id="outbox"></span></h2>
<h2>Recent audit trail</h2><table id="audit"></table>
<script type="application/json" id="data">{safe}</script>
<script>{script}</script></body></html>
"""
