"""The interactive training map of ``report.html``: inline SVG plus a little inline JavaScript.

The map figure's SVG (written by matplotlib, its artists carrying the ids
``tm-state-<k>`` / ``tm-edge-<key>`` and ``-label`` / ``-tag`` variants, see
:mod:`bayes_trainmap.report.map_figure`) is inlined without anything that points
outside the file (XML prolog, doctype, RDF metadata, namespace URIs and its
global ``*`` style are removed). A script (no ``src``, no network) makes every
state and edge respond to hover and click: the element is highlighted (for a
state, with its edges), its row in the states or edges table is highlighted,
and a panel under the map shows that row and the runs using the state or edge.
A click pins the selection; the address fragment ``#tm=state:3`` or
``#tm=edge:e2`` selects on load. When the script has run, the map element
carries ``data-tm-ready`` (the number of interactive items) and ``data-tm-box``
(``x,y,width,height`` in page pixels of the map and its panel).
"""

from __future__ import annotations

import html
import json
import re

from bayes_trainmap.report.map_layout import edge_keys

__all__ = ["inline_svg", "map_data", "interactive_map_html", "state_row_attrs", "edge_row_attrs", "MAP_CSS", "MAP_JS"]

MAP_CSS = """
.tm-map svg { width: 100%; height: auto; display: block; }
.tm-map svg * { stroke-linejoin: round; stroke-linecap: butt; }
.tm-map g[id^="tm-"] { cursor: pointer; transition: opacity .12s; }
.tm-map.tm-focus g[id^="tm-state-"], .tm-map.tm-focus g[id^="tm-edge-"] { opacity: .22; }
.tm-map.tm-focus g.tm-on, .tm-map.tm-focus g.tm-near { opacity: 1; }
.tm-map g.tm-on.tm-main path { stroke: #e67e22 !important; stroke-width: 3px !important; }
tr.tm-row-on td { background: #fdebd0 !important; }
tr[data-state], tr[data-edge] { cursor: pointer; }
#tm-info { min-height: 2.4em; border: 1px solid var(--line, #d9dde5); border-radius: 6px; padding: 8px 12px;
  margin: 6px 0 14px; font-size: 13px; background: #fbfcfd; }
#tm-info table { margin: 4px 0; }
#tm-info .tm-runs { color: #5b6475; word-break: break-word; }
"""

MAP_JS = r"""
(function () {
  function init() {
    var root = document.getElementById('tm-map');
    if (!root) return;
    var data = JSON.parse(document.getElementById('tm-data').textContent);
    var info = document.getElementById('tm-info');
    var items = {};
    root.querySelectorAll('g[id^="tm-"]').forEach(function (g) {
      var m = g.id.match(/^tm-(state|edge)-([^-]+)(-label|-tag)?$/);
      if (!m) return;
      var id = m[1] + ':' + m[2];
      var it = items[id] || (items[id] = {kind: m[1], key: m[2], els: []});
      if (!m[3]) g.classList.add('tm-main');
      it.els.push(g);
    });
    var pinned = null;
    function rowsOf(it) {
      return document.querySelectorAll(it.kind === 'state' ? 'tr[data-state="' + it.key + '"]' : 'tr[data-edge="' + it.key + '"]');
    }
    function clear() {
      root.classList.remove('tm-focus');
      root.querySelectorAll('.tm-on, .tm-near').forEach(function (e) { e.classList.remove('tm-on', 'tm-near'); });
      document.querySelectorAll('tr.tm-row-on').forEach(function (r) { r.classList.remove('tm-row-on'); });
      info.textContent = info.getAttribute('data-hint');
      root.removeAttribute('data-tm-selected');
    }
    function rowCopy(row) {
      var table = document.createElement('table');
      var head = row.closest('table').querySelector('thead').cloneNode(true);
      var body = document.createElement('tbody');
      body.appendChild(row.cloneNode(true));
      body.firstChild.classList.remove('tm-row-on');
      table.appendChild(head);
      table.appendChild(body);
      return table;
    }
    function show(id) {
      clear();
      var it = items[id];
      if (!it) return;
      root.classList.add('tm-focus');
      root.setAttribute('data-tm-selected', id);
      it.els.forEach(function (e) { e.classList.add('tm-on'); });
      var d = it.kind === 'state' ? data.states[it.key] : data.edges[it.key];
      (d && d.edges || []).forEach(function (k) {
        (items['edge:' + k] || {els: []}).els.forEach(function (e) { e.classList.add('tm-near'); });
      });
      (d && d.states || []).forEach(function (k) {
        (items['state:' + k] || {els: []}).els.forEach(function (e) { e.classList.add('tm-near'); });
      });
      var rows = rowsOf(it);
      rows.forEach(function (r) { r.classList.add('tm-row-on'); });
      info.textContent = '';
      var title = document.createElement('strong');
      title.textContent = d ? d.title : id;
      info.appendChild(title);
      if (rows.length) info.appendChild(rowCopy(rows[0]));
      var runs = document.createElement('div');
      runs.className = 'tm-runs';
      runs.textContent = d && d.runs.length ? 'runs (' + d.runs.length + '): ' + d.runs.join(', ') : 'no run of the point estimate uses it';
      info.appendChild(runs);
    }
    Object.keys(items).forEach(function (id) {
      items[id].els.forEach(function (el) {
        el.addEventListener('mouseenter', function () { if (!pinned) show(id); });
        el.addEventListener('mouseleave', function () { if (!pinned) clear(); });
        el.addEventListener('click', function (ev) {
          ev.stopPropagation();
          pinned = pinned === id ? null : id;
          if (pinned) show(id); else clear();
        });
      });
      rowsOf(items[id]).forEach(function (r) {
        r.addEventListener('click', function () { pinned = pinned === id ? null : id; if (pinned) show(id); else clear(); });
      });
    });
    var m = (location.hash || '').match(/tm=(state|edge):([A-Za-z0-9]+)/);
    clear();
    if (m && items[m[1] + ':' + m[2]]) {
      pinned = m[1] + ':' + m[2];
      show(pinned);
      var v = root.getBoundingClientRect();
      if (v.top < 0 || v.bottom > window.innerHeight) root.scrollIntoView();
    }
    var r = root.getBoundingClientRect(), p = info.getBoundingClientRect();
    root.setAttribute('data-tm-box', [r.left + window.scrollX, r.top + window.scrollY, r.width, p.bottom - r.top]
      .map(Math.round).join(','));
    root.setAttribute('data-tm-ready', String(Object.keys(items).length));
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
"""

HINT = "Hover over or click a state or an edge of the map (or a row of the tables below) to see its row and the runs using it."


def inline_svg(svg_text: str) -> str:
    """Matplotlib's SVG made fit to inline in HTML, with no reference outside the document.

    Removes the XML prolog, the doctype, the RDF metadata, the namespace
    declarations (HTML parsers supply the SVG and xlink namespaces) and the
    global ``*`` style (replaced by a rule scoped to the map in :data:`MAP_CSS`).
    """
    text = re.sub(r"<\?xml[^>]*\?>", "", svg_text)
    text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.S)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'<style type="text/css">\*\{[^<]*\}</style>', "", text)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = re.sub(r"<svg\b", '<svg role="img" aria-label="training map"', text, count=1)
    return text.strip()


def map_data(report: dict) -> dict:
    """What the panel shows per state and edge: a title, runs, and the adjacent edges or states.

    Returns
    -------
    dict
        ``{"states": {k: {title, runs, edges}}, "edges": {key: {title, runs, states}}}``
        with keys as strings (as in the SVG ids).
    """
    pairs = [(int(e["source"]), int(e["target"])) for e in report["edges"]]
    keys = edge_keys(pairs, report.get("uncertainty"))
    n_runs = report["fit"]["n_runs"]
    states = {}
    for s in report["states"]:
        k = int(s["state"])
        adjacent = [keys[p] for p in keys if k in p]
        states[str(k)] = {"title": f"State {k}: visited by {s['n_runs']} of {n_runs} runs", "runs": list(s["runs"]), "edges": adjacent}
    edges = {}
    by_pair = {(int(e["source"]), int(e["target"])): e for e in report["edges"]}
    for (a, b), key in keys.items():
        e = by_pair.get((a, b))
        runs = list(e["runs"]) if e else []
        title = f"Edge {key}: {a} → {b}" + (f", used by {e['n_runs']} of {n_runs} runs" if e else ", in posterior draws only")
        edges[key] = {"title": title, "runs": runs, "states": [str(a), str(b)]}
    return {"states": states, "edges": edges}


def state_row_attrs(report: dict) -> list[str]:
    """``data-state`` attributes of the states table's rows."""
    return [f'data-state="{int(s["state"])}"' for s in report["states"]]


def edge_row_attrs(report: dict) -> list[str]:
    """``data-edge`` attributes of the edges table's rows (point-estimate edges, then posterior-only ones)."""
    pairs = [(int(e["source"]), int(e["target"])) for e in report["edges"]]
    return [f'data-edge="{key}"' for key in edge_keys(pairs, report.get("uncertainty")).values()]


def interactive_map_html(report: dict, svg_text: str, caption: str) -> str:
    """The map block of ``report.html``: inline SVG, caption, selection panel, data and script."""
    payload = json.dumps(map_data(report), ensure_ascii=False).replace("</", "<\\/")
    return (
        f"<style>{MAP_CSS}</style>"
        f'<figure class="tm-map" id="tm-map">{inline_svg(svg_text)}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        f'<div id="tm-info" data-hint="{html.escape(HINT)}" aria-live="polite">{html.escape(HINT)}</div>'
        f'<script type="application/json" id="tm-data">{payload}</script>'
        f"<script>{MAP_JS}</script>"
    )
