/* The landslide web map: MapLibre GL JS over data embedded by pipeline.products.webmap.
 * Data come from window.LANDSLIDE_WEBMAP (data/map-data.js) and, for file:// pages, the
 * probability tiles from window.LANDSLIDE_TILES (data/tiles.js). All text from the data is put
 * into the page with textContent, never as HTML. window.landslideWebMap exposes the map and a
 * few helpers (used by the browser tests and the screenshot command). */
(function () {
  'use strict';
  var D = window.LANDSLIDE_WEBMAP;
  var T = window.LANDSLIDE_TILES || null;
  var BACKGROUND = '#f2f0eb';
  var COLORS = { polygons: '#00b7d4', area: '#1f4fbf', shakemap: '#8e2a9e' };
  var GROUPS = {
    basemap: ['basemap'],
    probability: ['probability'],
    shakemap: ['shakemap-line'],
    area: ['area-line'],
    polygons: ['polygons-fill', 'polygons-line']
  };
  var state = { ready: false, basemap: 'none', tileMode: null, errors: [], map: null };
  window.landslideWebMap = state;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { e.textContent = attrs[k]; } else if (k === 'style') { e.style.cssText = attrs[k]; } else { e.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { e.appendChild(c); } });
    return e;
  }
  function fmt(v) {
    if (typeof v === 'number') {
      if (Number.isInteger(v)) { return v.toLocaleString('en'); }
      return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
    }
    if (typeof v === 'boolean') { return v ? 'yes' : 'no'; }
    if (v === null || v === undefined) { return ''; }
    if (Array.isArray(v)) {
      if (v.every(function (x) { return typeof x !== 'object' || x === null; })) { return v.map(fmt).join(', '); }
      return v.length + ' item(s)';
    }
    if (typeof v === 'object') {
      return Object.keys(v).filter(function (k) { return typeof v[k] !== 'object' || v[k] === null; })
        .map(function (k) { return k + ': ' + fmt(v[k]); }).join('; ');
    }
    return String(v);
  }
  function human(k) { return k.replace(/[_:]+/g, ' ').replace(/\bkm2\b/, 'km²').replace(/^./, function (c) { return c.toUpperCase(); }); }
  function row(k, v) { return el('tr', {}, [el('td', { class: 'k', text: k }), el('td', { text: fmt(v) })]); }
  /* human labels (with units) for the store's facts and the polygons' attributes; other keys via human() */
  var LABELS = {
    'sentinel-2_scenes': ['Sentinel-2 scenes'], dem_tiles: ['DEM tiles'], checkpoint_sha256: ['Checkpoint'],
    crs: ['CRS'], window: ['Imagery window'], software_version: ['Software version'], model: ['Model'],
    id: ['Landslide', function (v) { return '#' + v; }],
    area_m2: ['Area', function (v) { return Math.round(v).toLocaleString('en') + ' m²'; }],
    n_pixels: ['Pixels', fmt],
    mean_probability: ['Mean probability', function (v) { return v.toFixed(3); }],
    max_probability: ['Max probability', function (v) { return v.toFixed(3); }],
    mean_slope_deg: ['Mean slope', function (v) { return v.toFixed(1) + '°'; }]
  };
  function labelledRow(k, v) {
    var l = LABELS[k];
    if (!l) { return row(human(k), v); }
    var text = l[1] && typeof v === 'number' ? l[1](v) : fmt(v);
    return el('tr', {}, [el('td', { class: 'k', text: l[0] }), el('td', { text: text })]);
  }

  /* ---- tiles: XYZ files over http(s), embedded base64 for file:// ---- */
  var base = location.href.replace(/[?#].*$/, '').replace(/[^/]*$/, '');
  var tileUrl = null;
  if (location.protocol === 'file:') {
    if (T) {
      maplibregl.addProtocol('landslide', function (params) {
        var key = params.url.replace(/^landslide:\/\//, '');
        var b64 = T.tiles[key] || T.blank;
        var bin = atob(b64);
        var bytes = new Uint8Array(bin.length);
        for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
        return Promise.resolve({ data: bytes.buffer });
      });
      tileUrl = 'landslide://{z}/{x}/{y}';
      state.tileMode = 'embedded';
    } else {
      state.tileMode = 'unavailable';
    }
  } else {
    tileUrl = base + D.tiles.path;
    state.tileMode = 'xyz';
  }

  /* ---- the side panel: title, alert, summary, legend, versions ---- */
  var panel = document.getElementById('panel');
  var S = D.summary || {};
  var store = D.store || {};
  /* first present value among dotted paths into the summary (flat or nested layouts) */
  function pick() {
    for (var i = 0; i < arguments.length; i++) {
      var v = arguments[i].split('.').reduce(function (o, k) { return o && typeof o === 'object' ? o[k] : undefined; }, S);
      if (v !== undefined && v !== null && v !== '') { return v; }
    }
    return undefined;
  }
  var consumed = { title: 1, event_id: 1, event_time: 1, time: 1, event: 1, alert: 1, alert_level: 1, stores: 1 };
  panel.appendChild(el('h1', { text: D.title }));
  var mag = pick('event.magnitude', 'magnitude');
  var sub = [pick('event_id', 'event.id') || store.event_id, mag !== undefined ? 'M' + mag : null,
    pick('event.place', 'place'), pick('event_time', 'event.time', 'time'), store.window ? 'imagery ' + store.window : null]
    .filter(function (x) { return x; }).map(String).join(' · ');
  if (sub) { panel.appendChild(el('div', { class: 'sub', text: sub })); }
  var alertValue = pick('alert.level', 'alert.colour', 'alert.color', 'alert', 'alert_level');
  if (alertValue && typeof alertValue !== 'object') {
    var lvl = String(alertValue).toLowerCase();
    var known = ['green', 'yellow', 'orange', 'red'].indexOf(lvl) >= 0;
    panel.appendChild(el('div', { id: 'alert', class: 'alert alert-' + (known ? lvl : 'unknown'), text: 'Alert: ' + lvl.toUpperCase() }));
    var why = [pick('alert.basis'), pick('alert.note')].filter(function (x) { return x; }).join('; ');
    if (why) { panel.appendChild(el('div', { class: 'sub', id: 'alert-note', text: 'from ' + why })); }
  }

  var table = el('table', { id: 'summary' });
  function add(label, keys, transform) {
    var v = pick.apply(null, keys);
    keys.forEach(function (k) { if (k.indexOf('.') < 0) { consumed[k] = 1; } });
    if (v === undefined) { return; }
    table.appendChild(row(label, transform ? transform(v) : v));
  }
  function pct(v) { return typeof v === 'number' && v <= 1 ? (100 * v).toFixed(1) + ' %' : v; }
  add('Observed landslide area (km²)', ['observed_area_km2', 'landslide_area_km2', 'observed.landslide_km2']);
  add('Landslides', ['landslide_count', 'polygon_count', 'count', 'observed.count']);
  add('Clear-data coverage', ['coverage'], pct);
  add('Area swept (km²)', ['area.swept_km2']);
  add('Area planned from', ['area.source']);
  add('Land area (km²)', ['area.land_km2']);
  add('Area note', ['area.note']);
  add('ShakeMap version', ['shakemap_version', 'area.shakemap.version']);
  add('Map version', ['version.n', 'version']);
  add('Made', ['version.created', 'created']);
  add('Imagery window', ['version.window', 'window'], function (w) { return Array.isArray(w) ? w.join(' to ') : w; });
  add('Scenes used', ['version.scenes', 'scenes'], function (v) { return Array.isArray(v) ? v.length : v; });
  add('Model', ['model.name', 'model']);
  add('Threshold', ['model.threshold', 'threshold']);
  add('Calibration', ['calibration', 'model.calibration'], function (c) { return c && typeof c === 'object' && c.method ? c.method : c; });
  consumed.observed = consumed.area = consumed.version = consumed.model = 1;
  Object.keys(S).forEach(function (k) {
    if (consumed[k] || S[k] === null || S[k] === undefined) { return; }
    table.appendChild(row(human(k), S[k]));
  });
  var nPoly = (D.polygons.features || []).length;
  var areaM2 = (D.polygons.features || []).reduce(function (a, f) { return a + ((f.properties || {}).area_m2 || 0); }, 0);
  if (!D.summary) {
    table.appendChild(row('Landslides mapped', nPoly));
    if (areaM2 > 0) { table.appendChild(row('Landslide area (km²)', areaM2 / 1e6)); }
  }
  Object.keys(store).forEach(function (k) {
    if (k !== 'event_id' && !S[k]) { table.appendChild(labelledRow(k, store[k])); } /* event id: in the subtitle */
  });
  if (table.childNodes.length) { panel.appendChild(el('h2', { text: 'Summary' })); panel.appendChild(table); }
  var byPga = pick('observed.by_pga_g', 'area_by_pga');
  if (byPga && typeof byPga === 'object') {
    var t2 = el('table', { id: 'by-pga' }, [el('tr', {}, [el('td', { class: 'k', text: 'PGA (g)' }), el('td', { text: 'km² · count' })])]);
    Object.keys(byPga).forEach(function (k) {
      var b = byPga[k];
      t2.appendChild(row(k, typeof b === 'object' ? fmt(b.landslide_km2) + ' · ' + fmt(b.count) : b));
    });
    panel.appendChild(el('h2', { text: 'Landslides by ShakeMap PGA' }));
    panel.appendChild(t2);
  }
  var largest = pick('observed.largest', 'largest');
  if (Array.isArray(largest) && largest.length) {
    panel.appendChild(el('h2', { text: 'Largest landslides' }));
    panel.appendChild(el('table', { id: 'largest' }, largest.slice(0, 5).map(function (f, i) {
      return row(String(i + 1), [f.area_m2 !== undefined ? fmt(f.area_m2) + ' m²' : null,
        f.mean_probability !== undefined ? 'p ' + fmt(f.mean_probability) : null,
        f.pga_g !== undefined ? 'PGA ' + fmt(f.pga_g) + ' g' : null].filter(function (x) { return x; }).join(', '));
    })));
  }

  /* legend */
  panel.appendChild(el('h2', { text: 'Layers' }));
  var legend = el('div', { id: 'legend' });
  panel.appendChild(legend);
  function layerRow(group, swatchStyle, label) {
    var box = el('input', { type: 'checkbox', id: 'toggle-' + group, 'data-group': group });
    box.checked = true;
    box.addEventListener('change', function () { setVisible(group, box.checked); });
    var r = el('label', { class: 'layer', id: 'legend-' + group, for: 'toggle-' + group },
      [box, el('span', { class: 'swatch', style: swatchStyle }), el('span', { text: label })]);
    legend.appendChild(r);
    return r;
  }
  var thr = D.probability.threshold;
  layerRow('polygons', 'background:transparent;border:2px solid ' + COLORS.polygons,
    'Landslides' + (thr !== null ? ' (p ≥ ' + thr.toFixed(2) + ')' : '') + ': ' + nPoly + ' polygon(s)' +
    (areaM2 > 0 ? ', ' + (areaM2 / 1e6).toFixed(3) + ' km²' : ''));
  layerRow('area', 'border-top:3px dashed ' + COLORS.area + ';height:0', 'Swept area');
  if (D.shakemap) {
    layerRow('shakemap', 'border-top:3px solid ' + COLORS.shakemap + ';height:0',
      'ShakeMap contour' + (D.shakemap_values.length ? ' (' + D.shakemap_values.join(', ') + ')' : ''));
  }
  layerRow('probability', 'background:linear-gradient(90deg,' + [0, 64, 128, 192, 255].map(function (i) {
    var c = D.colormap.lut[i]; return 'rgba(' + c[0] + ',' + c[1] + ',' + c[2] + ',' + (c[3] / 255).toFixed(3) + ')';
  }).join(',') + ')', 'Landslide probability');
  if (state.tileMode === 'unavailable') {
    legend.appendChild(el('div', { class: 'note', id: 'tiles-note',
      text: 'The probability tiles are too large to embed: serve this folder over HTTP (e.g. python -m http.server) to see them.' }));
  }

  /* colour bar: one canvas pixel per LUT entry, drawn over the panel's white */
  var cbBox = el('div', { id: 'colorbar-box' });
  var canvas = el('canvas', { id: 'colorbar', width: '256', height: '14',
    'data-min': String(D.probability.min), 'data-max': String(D.probability.max),
    'data-threshold': thr === null ? '' : String(thr) });
  cbBox.appendChild(canvas);
  var ctx = canvas.getContext('2d');
  var img = ctx.createImageData(256, 14);
  var lutN = D.colormap.lut.length;
  for (var x = 0; x < 256; x++) {
    var c = D.colormap.lut[Math.round(x * (lutN - 1) / 255)];
    var a = c[3] / 255;
    for (var y = 0; y < 14; y++) {
      var o = 4 * (y * 256 + x);
      img.data[o] = Math.round(c[0] * a + 255 * (1 - a));
      img.data[o + 1] = Math.round(c[1] * a + 255 * (1 - a));
      img.data[o + 2] = Math.round(c[2] * a + 255 * (1 - a));
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  var lo = D.probability.min, hi = D.probability.max;
  cbBox.appendChild(el('div', { class: 'cb-range', id: 'cb-range',
    style: 'left:' + (lo * 256).toFixed(1) + 'px;width:' + Math.max(2, (hi - lo) * 256).toFixed(1) + 'px' }));
  if (thr !== null) {
    cbBox.appendChild(el('div', { class: 'cb-threshold', id: 'cb-threshold', style: 'left:' + (thr * 256).toFixed(1) + 'px' }));
  }
  var ticks = el('div', { class: 'cb-ticks' });
  [0, 0.25, 0.5, 0.75, 1].forEach(function (t) { ticks.appendChild(el('span', { style: 'left:' + t * 256 + 'px', text: String(t) })); });
  cbBox.appendChild(ticks);
  legend.appendChild(cbBox);
  legend.appendChild(el('div', { id: 'prob-range', 'data-min': lo.toFixed(3), 'data-max': hi.toFixed(3),
    text: 'Probability in this map: ' + lo.toFixed(3) + ' to ' + hi.toFixed(3) + ' (box)' +
      (thr !== null ? '; threshold ' + thr.toFixed(2) + ' (dashed)' : '') }));

  if (D.versions.length) {
    panel.appendChild(el('h2', { text: 'Versions' }));
    panel.appendChild(el('ul', { id: 'versions' }, D.versions.map(function (v) {
      return el('li', {}, [el('a', { href: v.href, text: v.label })]);
    })));
  }
  if (D.downloads.length) {
    panel.appendChild(el('h2', { text: 'Data' }));
    panel.appendChild(el('ul', { id: 'downloads' }, D.downloads.map(function (v) {
      return el('li', {}, [el('a', { href: v.href, download: '', text: v.label })]);
    })));
  }
  var basemapNote = el('div', { id: 'basemap-status', text: 'Basemap: checking…' });
  panel.appendChild(el('div', { class: 'foot' }, [basemapNote,
    el('div', { text: 'MapLibre GL JS ' + D.maplibre_version + ' (BSD-3-Clause, vendor/LICENSE.txt). ' + D.attribution + '.' })]));

  /* ---- the map ---- */
  var sources = {
    polygons: { type: 'geojson', data: D.polygons },
    area: { type: 'geojson', data: D.area }
  };
  var layers = [{ id: 'background', type: 'background', paint: { 'background-color': BACKGROUND } }];
  if (tileUrl) {
    sources.probability = { type: 'raster', tiles: [tileUrl], tileSize: 256, minzoom: D.tiles.min_zoom,
      maxzoom: D.tiles.max_zoom, bounds: D.tiles.bounds, attribution: D.attribution };
    layers.push({ id: 'probability', type: 'raster', source: 'probability', paint: { 'raster-fade-duration': 0 } });
  }
  if (D.shakemap) {
    sources.shakemap = { type: 'geojson', data: D.shakemap };
    layers.push({ id: 'shakemap-line', type: 'line', source: 'shakemap', paint: { 'line-color': COLORS.shakemap, 'line-width': 2.5 } });
  }
  layers.push({ id: 'area-line', type: 'line', source: 'area', paint: { 'line-color': COLORS.area, 'line-width': 2.5, 'line-dasharray': [3, 2] } });
  /* polygons are outlined, not filled: a fill over the probability would blend into colours that
     no legend shows. The transparent fill layer only catches clicks for the pop-up. */
  layers.push({ id: 'polygons-fill', type: 'fill', source: 'polygons', paint: { 'fill-color': COLORS.polygons, 'fill-opacity': 0, 'fill-antialias': false } });
  layers.push({ id: 'polygons-line', type: 'line', source: 'polygons', paint: { 'line-color': COLORS.polygons, 'line-width': 2 } });

  var b = D.bounds;
  var map = new maplibregl.Map({
    container: 'map',
    style: { version: 8, sources: sources, layers: layers },
    bounds: [[b[0], b[1]], [b[2], b[3]]],
    fitBoundsOptions: { padding: 24 },
    maxZoom: D.tiles.max_zoom + 3,
    attributionControl: { compact: false },
    fadeDuration: 0
  });
  state.map = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-left');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  map.on('error', function (e) {
    var msg = (e && e.error && e.error.message) || String(e);
    state.errors.push({ source: e.sourceId || null, message: msg });
    if (e.sourceId !== 'basemap') { console.error('map error: ' + msg); }
  });
  map.on('click', 'polygons-fill', function (e) {
    var p = e.features[0].properties || {};
    var t = el('table', { class: 'popup-fields' }, Object.keys(p).map(function (k) { return labelledRow(k, p[k]); }));
    new maplibregl.Popup().setLngLat(e.lngLat).setDOMContent(t).addTo(map);
  });
  map.on('mouseenter', 'polygons-fill', function () { map.getCanvas().style.cursor = 'pointer'; });
  map.on('mouseleave', 'polygons-fill', function () { map.getCanvas().style.cursor = ''; });

  function setVisible(group, on) {
    (GROUPS[group] || []).forEach(function (id) {
      if (map.getLayer(id)) { map.setLayoutProperty(id, 'visibility', on ? 'visible' : 'none'); }
    });
    var box = document.getElementById('toggle-' + group);
    if (box) { box.checked = on; }
  }
  function whenIdle() {
    return new Promise(function (resolve) { map.once('idle', function () { resolve(true); }); map.triggerRepaint(); });
  }
  /* Show only the named layer groups (all when called without an argument); resolves when drawn. */
  state.show = function (groups) {
    Object.keys(GROUPS).forEach(function (g) { setVisible(g, !groups || groups.indexOf(g) >= 0); });
    return whenIdle();
  };
  state.whenIdle = whenIdle;

  function probe(template, ms) {
    return new Promise(function (resolve) {
      if (!template) { resolve(false); return; }
      var im = new Image();
      var timer = setTimeout(function () { im.onload = im.onerror = null; resolve(false); }, ms);
      im.onload = function () { clearTimeout(timer); resolve(true); };
      im.onerror = function () { clearTimeout(timer); resolve(false); };
      im.crossOrigin = 'anonymous';
      im.src = template.replace('{z}', '0').replace('{x}', '0').replace('{y}', '0');
    });
  }
  map.on('load', function () {
    probe(D.basemap && D.basemap.url, 5000).then(function (online) {
      if (online) {
        map.addSource('basemap', { type: 'raster', tiles: [D.basemap.url], tileSize: 256, maxzoom: 19, attribution: D.basemap.attribution });
        map.addLayer({ id: 'basemap', type: 'raster', source: 'basemap', paint: { 'raster-fade-duration': 0 } }, map.getLayer('probability') ? 'probability' : 'area-line');
        state.basemap = 'online';
        basemapNote.textContent = 'Basemap: ' + D.basemap.attribution + '.';
      } else {
        basemapNote.textContent = D.basemap ? 'Basemap: offline (plain background).' : 'Basemap: none.';
      }
      return whenIdle();
    }).then(function () { state.ready = true; });
  });
})();
