"""The status page: one self-contained HTML document (no external assets, no build step).

The server embeds the current status, audit trail and dead letters as JSON, so the page
shows them at once (and in a screenshot); a small script renders them as tables and fetches
them again every ``REFRESH_SECONDS`` with the same key the page was opened with.
"""

from __future__ import annotations

import json
from typing import Any

REFRESH_SECONDS = 15

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#f6f8fa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e1e4e8;vertical-align:top}
th{background:#eef1f4;font-weight:600}.muted{color:#57606a}.bad{color:#b42318;font-weight:600}
.ok{color:#1a7f37;font-weight:600}#note{float:right}
"""

_SCRIPT = r"""
const code = new URLSearchParams(location.search).get('code') || '';
function el(tag, text, cls) {
  const e = document.createElement(tag);
  e.textContent = text ?? '';
  if (cls) e.className = cls;
  return e;
}
function table(id, heads, rows) {
  const t = document.getElementById(id);
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
}
function modelRow(m) {
  const s = m.retrain, last = s.last_outcome || '-';
  const champion = m.champion ? 'v' + m.champion.version : (m.error ? el('span', m.error, 'bad') : '-');
  return [m.model, champion, m.versions.join(', '), s.window_opened_at || '-', s.pending_files,
          s.in_flight_job || '-', s.last_job || '-', el('span', last, last === 'failed' ? 'bad' : 'ok')];
}
function render(d) {
  const heads = ['Model', 'Champion', 'Versions', 'Window opened', 'Pending files', 'In-flight job', 'Last job',
                 'Last outcome'];
  table('models', heads, d.status.models.map(modelRow));
  const b = d.status.dead_letters, backlog = document.getElementById('backlog');
  backlog.textContent = b.pending + ' pending';
  backlog.className = b.pending ? 'bad' : 'ok';
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
    const [status, audit, letters] = await Promise.all([get('status'), get('audit?limit=50'), get('deadletters')]);
    render({status, audit: audit.records, deadletters: letters.dead_letters});
  } catch (e) {
    const note = document.getElementById('note');
    note.textContent = 'refresh failed: ' + e.message;
    note.className = 'bad';
  }
}
render(JSON.parse(document.getElementById('data').textContent));
setInterval(refresh, REFRESH_MS);
"""


def render(status: dict[str, Any], audit: list[dict[str, Any]], deadletters: list[dict[str, Any]]) -> str:
    data = json.dumps({"status": status, "audit": audit, "deadletters": deadletters}, default=str)
    safe = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    script = _SCRIPT.replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>mlops-reactor status</title>
<style>{_STYLE}</style></head>
<body><span id="note" class="muted"></span><h1>mlops-reactor</h1>
<div class="muted">models, retraining, audit trail and dead letters; refreshes every {REFRESH_SECONDS} s</div>
<h2>Models</h2><table id="models"></table>
<h2>Dead letters <span id="backlog"></span></h2><table id="letters"></table>
<h2>Recent audit trail</h2><table id="audit"></table>
<script type="application/json" id="data">{safe}</script>
<script>{script}</script></body></html>
"""
