// dsmopt web portal: the three steps of DSM-OPT (images → parameters → progress and results), the job
// list, operators' presets and administrators' users, all on the service's REST API. No build step; the
// map is Leaflet from Debian's libjs-leaflet, served by the daemon. The token lives in sessionStorage only.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
};

const state = {
  token: sessionStorage.getItem('dsmopt-token'),
  me: null,
  process: null,
  presets: [],
  selected: [],          // upload ids chosen for the job, in order
  described: {},         // upload id → upload view (with image summary)
  inspection: null,
  aoi: null,             // GeoJSON Polygon geometry drawn or typed
  config: { basemapURL: null },
  poll: null,
  flash: null,           // a message for the next page shown (after a deletion)
  template: null,        // a job whose images and settings the next new job starts from
  routes: 0,             // how many times the address was followed (`poll`)
};

// ---------------------------------------------------------------- API

// Where the service is, as the browser reached it: '' when the portal is at the host's root, '/prefix'
// behind a reverse proxy that serves it under a path prefix. Every request goes through it (paths of the
// API below), so the portal needs no configuration either way.
const BASE = new URL('.', location.href).pathname.replace(/\/$/, '');

class APIError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(path, { method = 'GET', body, raw = false, headers = {} } = {}) {
  const h = Object.assign({}, headers);
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  if (body !== undefined && !(body instanceof Blob) && !(body instanceof ArrayBuffer)) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(body);
  }
  const r = await fetch(BASE + path, { method, headers: h, body });
  if (r.status === 401 && state.me) { signOut('Your session ended: the token was revoked or replaced. Sign in again.'); }
  if (!r.ok) {
    let problem = null;
    try { problem = await r.json(); } catch (_) { /* not JSON */ }
    throw new APIError(r.status, problem);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  const type = r.headers.get('Content-Type') || '';
  return type.includes('json') ? r.json() : r.text();
}

function banner(message, kind = 'error') {
  const b = $('#banner');
  b.textContent = message || '';
  b.className = kind;
  b.hidden = !message;
}

const fmtBytes = (n) => {
  if (n === undefined || n === null) return '';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0, v = Number(n);
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return `${v.toFixed(v < 10 && i ? 1 : 0)} ${u[i]}`;
};
const fmtDate = (s) => s ? new Date(s).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—';
/// Empties a <dl> and returns a function adding a term and its value to it.
const facts = (sel) => {
  const dl = $(sel);
  dl.textContent = '';
  return (k, v) => dl.append(el('dt', {}, k), el('dd', {}, v));
};
const round = (v, d = 2) => (v === undefined || v === null) ? '' : Number(v).toFixed(d);

// ---------------------------------------------------------------- sign-in

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api('/me');
  } catch (e) {
    state.token = null; state.me = null;
    sessionStorage.removeItem('dsmopt-token');
    throw e;
  }
  sessionStorage.setItem('dsmopt-token', token);
  $('#nav').hidden = false;
  $('#whoami').textContent = `${state.me.name} (${state.me.role})`;
  $('#nav-presets').hidden = !['operator', 'admin'].includes(state.me.role);
  $('#nav-users').hidden = state.me.role !== 'admin';
  $('#all-jobs-label').hidden = !['operator', 'admin'].includes(state.me.role);
}

function signOut(message) {
  state.token = null; state.me = null;
  sessionStorage.removeItem('dsmopt-token');
  $('#nav').hidden = true;
  stopPolling();
  location.hash = '#/signin';
  if (message) $('#signin-error').textContent = message;
}

$('#signin-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#signin-error').textContent = '';
  const token = $('#token').value.trim();
  try {
    await signIn(token);
    $('#token').value = '';
    location.hash = '#/jobs';
  } catch (e) {
    $('#signin-error').textContent = e.status === 401
      ? 'This token is wrong, expired or revoked. Check it, or ask your administrator for a new one.'
      : `Cannot sign in: ${e.message}`;
  }
});
$('#signout').addEventListener('click', () => signOut());

// ---------------------------------------------------------------- routing

const views = ['signin', 'new', 'jobs', 'job', 'presets', 'users', 'account'];
function show(view) {
  for (const v of views) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('#nav a')) a.removeAttribute('aria-current');
  const nav = $(`#nav-${view === 'job' ? 'jobs' : view}`);
  if (nav) nav.setAttribute('aria-current', 'page');
}

function stopPolling() { if (state.poll) { clearInterval(state.poll); state.poll = null; } }

/// Calls `refresh` every 2 s until the next route. `routed` is `state.routes` when the view began: a view
/// overtaken by a newer route while it loaded (the address changed again) starts no poll of its own.
function poll(routed, refresh) {
  if (routed !== state.routes) return;
  stopPolling();
  state.poll = setInterval(() => refresh().catch((e) => banner(e.message)), 2000);
}

async function route() {
  state.routes += 1;
  stopPolling();
  banner(state.flash || '', 'info');
  state.flash = null;
  const hash = location.hash || '#/jobs';
  if (!state.me) {
    if (state.token) { try { await signIn(state.token); } catch (_) { state.token = null; } }
    if (!state.me) { show('signin'); $('#token').focus(); return; }
  }
  const [, page, arg] = hash.split('?')[0].split('/');
  try {
    if (page === 'new') { show('new'); await newJobView(); }
    else if (page === 'job' && arg) { show('job'); await jobView(arg); }
    else if (page === 'presets') { show('presets'); await presetsView(); }
    else if (page === 'users') { show('users'); await usersView(); }
    else if (page === 'account') { show('account'); await accountView(); }
    else { show('jobs'); await jobsView(); }
  } catch (e) { banner(e.message); }
}
window.addEventListener('hashchange', route);

// ---------------------------------------------------------------- maps

function baseMap(id) {
  const holder = $(`#${id}`);
  if (holder._map) return holder._map;
  const map = L.map(id, { zoomControl: true, attributionControl: true }).setView([0, 0], 2);
  if (state.config.basemapURL) {
    L.tileLayer(state.config.basemapURL, { attribution: state.config.basemapAttribution || '', maxZoom: 22 }).addTo(map);
  }
  L.control.scale({ imperial: false }).addTo(map);
  holder._map = map;
  return map;
}

const lonLat = (ring) => ring.map(([lon, lat]) => [lat, lon]);

// ---------------------------------------------------------------- step 1: images

function step(n) {
  for (const k of [1, 2, 3]) {
    $(`#step-${k}`).hidden = k !== n;
    $(`#step-tab-${k}`).setAttribute('aria-current', k === n ? 'step' : 'false');
  }
  if (n === 1) setTimeout(() => { baseMap('map-images').invalidateSize(); drawFootprints('map-images'); }, 0);
  if (n === 2) setTimeout(() => { baseMap('map-aoi').invalidateSize(); drawFootprints('map-aoi'); drawAOI(); }, 0);
}
for (const k of [1, 2, 3]) $(`#step-tab-${k}`).addEventListener('click', () => { if (k === 2 && !checkImageCount()) return; step(k); });

async function newJobView() {
  if (!state.process) {
    state.config = await api('/portal/config.json');
    state.process = await api('/processes/dsm-opt');
    state.presets = state.process.presets || [];
    buildForm();
  }
  $('#template-note').hidden = true;
  // Mail about the job: offered when the service sends mail; the address is the account's (set there).
  const me = await api('/me');
  $('#mail-field').hidden = !me.mailConfigured;
  $('#mail-job').disabled = !me.email;
  $('#mail-job').checked = Boolean(me.email);
  $('#mail-job-hint').textContent = me.email ? `To ${me.email}, with the links to the results (or the reason it failed).`
    : 'No address to mail: set one on your Account page.';
  const template = state.template;
  state.template = null;
  const uploads = await listUploads();
  if (template) await applyTemplate(template, uploads);
  step(1);
}

/// The images chosen changed: the pair table read for the previous choice no longer holds.
function forgetPairs() {
  state.inspection = null; $('#pairs').hidden = true; $('#pairs-summary').textContent = '';
}

/// Starts a new job from an earlier one ("New job with these settings"): its images and files (those still
/// uploaded), preset, parameters and area of interest, every other field back to its default. What the
/// form cannot hold (a pixel `roi` or `resolution` sent through the API) or a deleted upload is named.
async function applyTemplate(t, uploads) {
  const have = new Set(uploads.map((u) => u.id));
  const inputs = t.inputs || [];
  const missing = inputs.filter((r) => !have.has(r.upload)).map((r) => r.fileName);
  state.selected = inputs.filter((r) => r.field.startsWith('images') && have.has(r.upload)).map((r) => r.upload);
  forgetPairs();
  for (const box of document.querySelectorAll('#uploads tbody input[type=checkbox]')) box.checked = state.selected.includes(box.id.slice('use-'.length));
  for (const f of finishingFields) {
    const r = inputs.find((x) => x.field === f);
    $(`#file-${f}`).value = r && have.has(r.upload) ? r.upload : '';
  }
  for (const id of state.selected) fillImageRow(id, await describe(id));
  drawFootprints('map-images');
  // The form: defaults first, then what the job was given.
  clearErrors();
  $('#job-name').value = `${t.name} (again)`.slice(0, 200);
  $('#preset').value = state.presets.some((p) => p.name === t.preset) ? t.preset : 'default';
  $('#preset').dispatchEvent(new Event('change'));
  for (const p of state.process.parameters) {
    const input = fieldIds[`parameters.${p.name}`] && $(`#${fieldIds[`parameters.${p.name}`]}`);
    if (!input || p.name === 'epsg') continue;
    if (p.type === 'boolean') input.checked = p.default === 'true';
    else if (p.type === 'choice') input.value = p.default || '';
    else input.value = /^-?[0-9.]+$/.test(p.default || '') ? p.default : '';
  }
  $('#epsg').value = ''; $('#epsg-name').textContent = '';
  state.aoi = null; $('#aoi-bbox').value = '';
  const left = [];
  let expert = false;
  for (const [k, v] of Object.entries(t.parameters || {})) {
    if (k === 'aoi') {
      const b = v.bbox;
      const ring = b ? [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]] : (v.coordinates && v.coordinates[0]);
      if (ring) setAOI(ring.map((c) => [c[0], c[1]])); else left.push(k);
      continue;
    }
    if (k === 'epsg') { $('#epsg').value = String(v); crsName(); continue; }
    const spec = state.process.parameters.find((p) => p.name === k);
    const input = fieldIds[`parameters.${k}`] && $(`#${fieldIds[`parameters.${k}`]}`);
    if (!spec || !input) { left.push(k); continue; }
    if (spec.type === 'boolean') input.checked = v === true; else input.value = String(v);
    if (spec.group === 'expert') expert = true;
  }
  $('#expert-mode').checked = expert;
  $('#expert-fields').hidden = !expert;
  // Mail as the job had it: turned off stays off (on is the default where an address is set).
  if (t.requestedMail === false) $('#mail-job').checked = false;
  drawAOI();
  const note = [`Starting from the job "${t.name}": its images, files and settings are filled in; change what you like.`];
  if (missing.length) note.push(`Deleted since, upload again if needed: ${missing.join(', ')}.`);
  if (left.length) note.push(`Not in this form, left out: ${left.join(', ')}.`);
  $('#template-note').textContent = note.join(' ');
  $('#template-note').hidden = false;
}

const finishingFields = ['referenceDem', 'waterMask', 'multispectral'];

async function listUploads() {
  const { uploads } = await api('/uploads');
  for (const f of finishingFields) {
    const sel = $(`#file-${f}`);
    const keep = sel.value;
    sel.textContent = '';
    sel.append(el('option', { value: '' }, '(none)'));
    for (const u of uploads) sel.append(el('option', { value: u.id }, `${u.fileName} (${fmtBytes(u.size)})`));
    sel.value = uploads.some((u) => u.id === keep) ? keep : '';
  }
  const body = $('#uploads tbody');
  body.textContent = '';
  for (const u of uploads) {
    const remove = el('button', { type: 'button', class: 'delete-upload', 'aria-label': `Delete ${u.fileName}` }, 'Delete');
    remove.addEventListener('click', () => deleteUpload(u));
    if (u.kind === 'geojson') {
      // A vector water mask: not an image to tick, but the user's file all the same.
      body.append(el('tr', { id: `upload-${u.id}` }, el('td', {}), el('td', {}, u.fileName), el('td', {}, fmtBytes(u.size)),
        el('td', { colspan: 4, class: 'hint' }, 'GeoJSON (a water mask for step 2)'), el('td', {}, remove)));
      continue;
    }
    const box = el('input', { type: 'checkbox', id: `use-${u.id}`, 'aria-label': `Use ${u.fileName}` });
    box.checked = state.selected.includes(u.id);
    box.addEventListener('change', async () => {
      if (box.checked) { if (!state.selected.includes(u.id)) state.selected.push(u.id); }
      else state.selected = state.selected.filter((x) => x !== u.id);
      forgetPairs();
      $('#images-error').textContent = '';
      if (box.checked) await describe(u.id);
      drawFootprints('map-images');
    });
    const row = el('tr', { id: `upload-${u.id}` }, el('td', {}, box), el('td', {}, el('label', { for: `use-${u.id}` }, u.fileName)),
      el('td', {}, fmtBytes(u.size)), el('td', { class: 'acq' }), el('td', { class: 'angles' }), el('td', { class: 'gsd' }), el('td', { class: 'px' }),
      el('td', {}, remove));
    body.append(row);
    if (u.image || u.images) fillImageRow(u.id, u);
  }
  return uploads;
}

/// Deletes an upload of the user's after a confirmation; the API refuses one a queued or running job needs.
async function deleteUpload(u) {
  if (!confirm(`Delete ${u.fileName} (${fmtBytes(u.size)}) from the service? Jobs that used it keep their results.`)) return;
  $('#images-error').textContent = ''; $('#uploads-message').textContent = '';
  try {
    await api(`/uploads/${u.id}`, { method: 'DELETE' });
  } catch (e) {
    $('#images-error').textContent = `${u.fileName}: ${e.message}`;
    return;
  }
  state.selected = state.selected.filter((x) => x !== u.id);
  delete state.described[u.id];
  forgetPairs();
  await listUploads();
  drawFootprints('map-images');
  $('#uploads-message').textContent = `${u.fileName} deleted: ${fmtBytes(u.size)} freed.`;
}

function fillImageRow(id, view) {
  state.described[id] = view;
  const row = $(`#upload-${id}`);
  if (!row) return;
  const im = view.image || (view.images && view.images[0]);
  if (view.images) {
    row.querySelector('.acq').textContent = `delivery of ${view.images.length} images: ` + view.images.map((x) => x.acquisitionTime ? fmtDate(x.acquisitionTime) : 'unknown').join(', ');
    row.querySelector('.angles').textContent = view.images.map((x) => `${round(x.incidenceDeg, 1)}° / ${round(x.azimuthDeg, 1)}°`).join('; ');
    row.querySelector('.gsd').textContent = view.images.map((x) => `${round(x.gsd, 2)} m`).join('; ');
    row.querySelector('.px').textContent = view.images.map((x) => `${x.width} × ${x.height}`).join('; ');
    return;
  }
  if (!im) {
    row.querySelector('.acq').textContent = view.readError || '';
    row.querySelector('.acq').className = 'acq error';
    return;
  }
  row.querySelector('.acq').textContent = im.acquisitionTime ? fmtDate(im.acquisitionTime) : 'unknown';
  row.querySelector('.angles').textContent = `${round(im.incidenceDeg, 1)}° / ${round(im.azimuthDeg, 1)}°`;
  row.querySelector('.gsd').textContent = `${round(im.gsd, 2)} m`;
  row.querySelector('.px').textContent = `${im.width} × ${im.height}`;
}

async function describe(id) {
  if (state.described[id] && (state.described[id].image || state.described[id].images)) return state.described[id];
  const row = $(`#upload-${id}`);
  if (row) row.querySelector('.acq').textContent = 'reading…';
  const view = await api(`/uploads/${id}`);
  fillImageRow(id, view);
  return view;
}

function drawFootprints(mapId) {
  const map = baseMap(mapId);
  if (map._footprints) map.removeLayer(map._footprints);
  const group = L.featureGroup();
  selectedImages().forEach((im, i) => {
    if (im.image && im.image.footprint) {
      L.polygon(lonLat(im.image.footprint), { color: ['#1f78b4', '#e31a1c', '#33a02c'][i % 3], weight: 2, fillOpacity: 0.05 })
        .bindTooltip(im.name).addTo(group);
    }
  });
  group.addTo(map);
  map._footprints = group;
  if (group.getLayers().length) map.fitBounds(group.getBounds().pad(0.2));
}

// Files wait their turn: the service takes a few uploads of one user at a time (maxConcurrentUploads).
const uploadQueue = [];
let uploadsRunning = 0;
function pumpUploads() {
  while (uploadQueue.length && uploadsRunning < (state.config.maxConcurrentUploads || 2)) {
    const start = uploadQueue.shift();
    uploadsRunning++;
    start(() => { uploadsRunning--; pumpUploads(); });
  }
}
$('#files').addEventListener('change', (ev) => {
  for (const f of ev.target.files) uploadFile(f);
  ev.target.value = '';
});

function uploadFile(file) {
  const bar = el('progress', { max: 100, value: 0, 'aria-label': `Upload of ${file.name}` });
  const status = el('span', { class: 'status' }, 'waiting…');
  const xhr = new XMLHttpRequest();
  let queued = true, finish = () => {};
  const cancel = el('button', { type: 'button', onclick: () => {
    if (queued) { queued = false; uploadQueue.splice(uploadQueue.indexOf(begin), 1); status.textContent = 'cancelled'; cancel.remove(); }
    else xhr.abort();
  } }, 'Cancel');
  const row = el('tr', { class: 'upload-row' }, el('td', {}, file.name), el('td', {}, bar), el('td', {}, status), el('td', {}, cancel));
  $('#upload-progress tbody').append(row);
  const name = file.name.replace(/[^A-Za-z0-9._-]/g, '_');
  xhr.open('POST', `${BASE}/uploads?name=${encodeURIComponent(name)}`);
  xhr.setRequestHeader('Authorization', `Bearer ${state.token}`);
  xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); });
  xhr.addEventListener('loadend', () => finish());
  xhr.addEventListener('load', async () => {
    cancel.remove();
    if (xhr.status === 201) {
      bar.value = 100;
      const u = JSON.parse(xhr.responseText);
      // A GeoJSON is a water mask for step 2, not an image of the pair.
      const mask = u.kind === 'geojson';
      status.textContent = mask ? 'uploaded: a GeoJSON water mask, to pick in step 2' : 'uploaded';
      if (!mask) state.selected.push(u.id);
      await listUploads();
      if (mask) return;
      try {
        const v = await describe(u.id);
        const untick = (text, cls) => {
          state.selected = state.selected.filter((x) => x !== u.id);
          const box = $(`#use-${u.id}`);
          if (box) box.checked = false;
          forgetPairs();
          status.textContent = text;
          status.className = cls;
        };
        // Not an image of the pair (a reference DEM without RPC, say, is picked in step 2): left unticked.
        if (!v.image && !v.images) untick(`uploaded, but ${v.readError || 'not readable as an image'}: not ticked (a reference DEM is picked in step 2)`, 'status error');
        // A multispectral image (the pipeline matches one band) is for step 2's water masking, unless ticked.
        else if (v.image && v.image.bands >= 3) untick(`uploaded: a ${v.image.bands}-band image, not ticked (a multispectral image is picked in step 2; tick it to match it)`, 'status');
      } catch (e) { status.textContent = e.message; status.className = 'status error'; }
      drawFootprints('map-images');
    } else {
      let detail = `HTTP ${xhr.status}`;
      try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (_) { /* not JSON */ }
      status.textContent = detail;
      status.className = 'status error';
      $('#images-error').textContent = `${file.name}: ${detail}`;
    }
  });
  xhr.addEventListener('abort', () => { status.textContent = 'cancelled'; cancel.remove(); });
  xhr.addEventListener('error', () => { status.textContent = 'the connection failed'; status.className = 'status error'; cancel.remove(); });
  const begin = (done) => {
    queued = false; finish = done;
    status.textContent = 'uploading…';
    xhr.send(file);
  };
  uploadQueue.push(begin);
  pumpUploads();
}

/// The images the selection stands for: an upload of a zipped delivery counts each of its views.
function selectedImages() {
  const out = [];
  for (const id of state.selected) {
    const v = state.described[id];
    const n = v && v.images ? v.images.length : 1;
    for (let k = 0; k < n; k++) out.push({ id, k, image: v ? (v.images ? v.images[k] : v.image) : null, name: v && v.images ? `${v.fileName} image ${k + 1}` : (v ? v.fileName : id) });
  }
  return out;
}

function checkImageCount() {
  const n = selectedImages().length;
  if (n < 2 || n > 3) {
    $('#images-error').textContent = `stereo needs 2 or 3 images, got ${n}`;
    step(1);
    return false;
  }
  return true;
}

$('#inspect').addEventListener('click', inspect);
async function inspect() {
  $('#images-error').textContent = '';
  if (!checkImageCount()) return false;
  $('#pairs-summary').textContent = 'Reading the images…';
  try {
    for (const id of state.selected) await describe(id);
    drawFootprints('map-images');
    const r = await api('/processes/dsm-opt/inspection', { method: 'POST', body: { images: state.selected.map((id) => ({ upload: id })) } });
    state.inspection = r;
    // Footprints at the scene's height (one image alone is placed at its RPC model's height offset).
    selectedImages().forEach((im, i) => { if (im.image && r.images[i]) im.image.footprint = r.images[i].footprint; });
    drawFootprints('map-images');
    const body = $('#pairs tbody');
    body.textContent = '';
    for (const p of r.pairs) {
      const names = p.images.map((i) => r.images[i] && (r.images[i].path || `image ${i + 1}`)).join(' + ');
      body.append(el('tr', { class: p.status }, el('td', {}, names), el('td', { class: 'bh' }, round(p.baseToHeight, 2)),
        el('td', {}, `${round(p.convergenceDeg, 1)}°`), el('td', {}, `${Math.round(100 * p.overlap)} %`),
        el('td', { class: 'pair-status' }, p.status), el('td', {}, p.reason)));
    }
    $('#pairs').hidden = false;
    $('#pairs-summary').textContent = r.reason || '';
    // Default output CRS: the scene's UTM zone.
    const c = r.pairs.length && r.pairs[0].overlapCentre;
    if (c && !$('#epsg').value) { $('#epsg').value = (c.latitude >= 0 ? 32600 : 32700) + Math.floor((c.longitude + 180) / 6) + 1; crsName(); }
    return true;
  } catch (e) {
    $('#pairs-summary').textContent = '';
    showFieldErrors(e, 'images-error');
    return false;
  }
}

$('#to-step-2').addEventListener('click', async () => {
  if (!checkImageCount()) return;
  if (!state.inspection && !(await inspect())) return;
  step(2);
});

// ---------------------------------------------------------------- step 2: parameters

const fieldIds = {};   // API field name → input id

function buildForm() {
  const sel = $('#preset');
  sel.textContent = '';
  for (const p of state.presets) sel.append(el('option', { value: p.name }, `${p.name} — ${p.description || ''}`));
  if (state.presets.some((p) => p.name === 'default')) sel.value = 'default';
  const help = () => { const p = state.presets.find((x) => x.name === sel.value); $('#preset-help').textContent = p ? p.description || '' : ''; };
  sel.addEventListener('change', help);
  help();
  fieldIds.name = 'job-name'; fieldIds.preset = 'preset'; fieldIds['parameters.aoi'] = 'aoi-bbox'; fieldIds['parameters.epsg'] = 'epsg';
  for (const p of state.process.parameters) {
    if (['roi', 'aoi', 'epsg', 'resolution'].includes(p.name)) continue;
    const id = `param-${p.name}`;
    fieldIds[`parameters.${p.name}`] = id;
    const box = $(p.group === 'expert' ? '#expert-fields' : '#standard-fields');
    let input;
    if (p.type === 'boolean') {
      input = el('input', { type: 'checkbox', id, name: p.name });
      input.checked = p.default === 'true';
      box.append(el('div', { class: 'field check' }, el('label', { for: id }, input, ` ${p.name.replace(/-/g, ' ')}`),
        el('p', { class: 'hint' }, p.description), el('p', { class: 'error', id: `err-${id}` })));
    } else {
      if (p.type === 'choice') {
        input = el('select', { id, name: p.name });
        for (const c of p.choices || []) input.append(el('option', { value: c }, c));
        if (p.default) input.value = p.default;
      } else {
        input = el('input', { id, name: p.name, inputmode: 'decimal', placeholder: p.default || '' });
        if (/^-?[0-9.]+$/.test(p.default || '')) input.value = p.default;
        input.addEventListener('input', () => validateField(p, input));
      }
      const range = p.expected ? `${p.expected}${p.default ? `; default ${p.default}` : ''}` : '';
      box.append(el('div', { class: 'field' }, el('label', { for: id }, p.name.replace(/-/g, ' ')), input,
        el('p', { class: 'hint' }, `${p.description}. ${range}`), el('p', { class: 'error', id: `err-${id}` })));
    }
    input.dataset.param = p.name;
  }
  const epsgSpec = state.process.parameters.find((p) => p.name === 'epsg');
  $('#epsg').addEventListener('input', () => { validateField(epsgSpec, $('#epsg')); crsName(); });
  $('#expert-mode').addEventListener('change', (e) => { $('#expert-fields').hidden = !e.target.checked; });
}

/// The API's rule for a number (ParameterSpec.problem), message as the API words it.
function numberProblem(p, text) {
  const v = Number(text);
  let ok = text.trim() !== '' && Number.isFinite(v);
  if (p.type === 'integer' || p.type === 'odd-integer') ok = ok && Number.isInteger(v);
  if (p.type === 'odd-integer') ok = ok && Math.abs(v) % 2 === 1;
  if (p.minimum !== undefined) ok = ok && (p.exclusiveMinimum ? v > p.minimum : v >= p.minimum);
  if (p.maximum !== undefined) ok = ok && (p.exclusiveMaximum ? v < p.maximum : v <= p.maximum);
  return ok ? null : `${text.trim()}: expected ${p.expected}`;
}

function validateField(p, input) {
  const err = $(`#err-${input.id}`) || $('#err-form');
  const text = input.value;
  const problem = text.trim() === '' ? null : numberProblem(p, text);
  err.textContent = problem || '';
  input.setAttribute('aria-invalid', problem ? 'true' : 'false');
  return !problem;
}

let crsTimer = null;
function crsName() {
  clearTimeout(crsTimer);
  crsTimer = setTimeout(async () => {
    const v = $('#epsg').value.trim();
    if (!/^[0-9]+$/.test(v)) { $('#epsg-name').textContent = ''; return; }
    try { const c = await api(`/crs/${v}`); $('#epsg-name').textContent = c.name; $('#err-epsg').textContent = c.gridProblem || ''; }
    catch (e) { $('#epsg-name').textContent = ''; $('#err-epsg').textContent = e.message; }
  }, 250);
}

// Area of interest: a rectangle (two clicks) or a polygon (clicks, then click the first point or "Finish").
let drawing = null;
function drawAOI() {
  const map = baseMap('map-aoi');
  if (map._aoi) map.removeLayer(map._aoi);
  map._aoi = null;
  if (state.aoi) map._aoi = L.polygon(lonLat(state.aoi.coordinates[0]), { color: '#ff7f00', weight: 2, fillOpacity: 0.1 }).addTo(map);
}
function setAOI(ring) {
  if (ring[0][0] !== ring[ring.length - 1][0] || ring[0][1] !== ring[ring.length - 1][1]) ring.push(ring[0]);
  state.aoi = { type: 'Polygon', coordinates: [ring.map(([x, y]) => [Number(x.toFixed(7)), Number(y.toFixed(7))])] };
  const xs = ring.map((p) => p[0]), ys = ring.map((p) => p[1]);
  const isBox = ring.length === 5 && new Set(xs).size === 2 && new Set(ys).size === 2;
  $('#aoi-bbox').value = isBox ? [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)].map((v) => v.toFixed(6)).join(',') : '';
  $('#err-aoi').textContent = '';
  drawAOI();
}
function startDrawing(kind) {
  const map = baseMap('map-aoi');
  if (drawing) drawing.stop();
  const points = [];
  const temp = L.polyline([], { color: '#ff7f00', dashArray: '4' }).addTo(map);
  const onClick = (e) => {
    points.push([e.latlng.lng, e.latlng.lat]);
    if (kind === 'rect' && points.length === 2) {
      const [[x0, y0], [x1, y1]] = points;
      stop();
      setAOI([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]);
      return;
    }
    temp.setLatLngs(lonLat(points));
  };
  const onDbl = () => { if (kind === 'poly' && points.length >= 3) { stop(); setAOI(points.slice()); } };
  const stop = () => { map.off('click', onClick); map.off('dblclick', onDbl); map.removeLayer(temp); map.doubleClickZoom.enable(); drawing = null; $('#map-aoi').classList.remove('drawing'); };
  map.doubleClickZoom.disable();
  map.on('click', onClick);
  map.on('dblclick', onDbl);
  $('#map-aoi').classList.add('drawing');
  drawing = { stop };
}
$('#draw-rect').addEventListener('click', () => startDrawing('rect'));
$('#draw-poly').addEventListener('click', () => startDrawing('poly'));
$('#clear-aoi').addEventListener('click', () => { state.aoi = null; $('#aoi-bbox').value = ''; drawAOI(); });
$('#aoi-bbox').addEventListener('change', () => {
  const t = $('#aoi-bbox').value.trim();
  if (!t) { state.aoi = null; drawAOI(); return; }
  const v = t.split(',').map(Number);
  if (v.length !== 4 || v.some((x) => !Number.isFinite(x)) || v[0] >= v[2] || v[1] >= v[3] || v[0] < -180 || v[2] > 180 || v[1] < -90 || v[3] > 90) {
    $('#err-aoi').textContent = 'must be "minLon,minLat,maxLon,maxLat" with min < max, in degrees';
    return;
  }
  setAOI([[v[0], v[1]], [v[2], v[1]], [v[2], v[3]], [v[0], v[3]]]);
});

function clearErrors() {
  for (const e of document.querySelectorAll('#job-form .error, #images-error')) e.textContent = '';
  for (const e of document.querySelectorAll('#job-form [aria-invalid="true"]')) e.setAttribute('aria-invalid', 'false');
}

/// Shows a problem document's field errors next to their fields (the API's own words).
function showFieldErrors(e, fallbackId) {
  const errors = (e.problem && e.problem.errors) || [];
  let shown = false;
  for (const fe of errors) {
    let target = null;
    if (fe.field.startsWith('images')) target = $('#images-error');
    else if (fieldIds[fe.field]) target = $(`#err-${fieldIds[fe.field]}`) || $(`#err-${fe.field}`);
    if (fe.field === 'name') target = $('#err-name');
    if (fe.field === 'preset') target = $('#err-preset');
    if (fe.field === 'mail') target = $('#err-mail');
    if (fe.field === 'parameters.aoi') target = $('#err-aoi');
    if (fe.field === 'parameters.epsg') target = $('#err-epsg');
    const file = finishingFields.find((f) => fe.field === f || fe.field.startsWith(`${f}.`));
    if (file) target = $(`#err-file-${file}`);
    if (target) { target.textContent = (target.textContent ? target.textContent + '; ' : '') + fe.message; shown = true; if (fe.field.startsWith('images')) step(1); }
  }
  if (!shown) $(`#${fallbackId}`).textContent = e.message;
}

$('#job-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  clearErrors();
  if (!checkImageCount()) return;
  let ok = true;
  const name = $('#job-name').value.trim();
  if (!name) { $('#err-name').textContent = 'must be a string of 1–200 characters'; ok = false; }
  const parameters = {};
  for (const p of state.process.parameters) {
    if (p.name === 'roi' || p.name === 'aoi') continue;   // the AOI comes from the map or the box below
    const id = fieldIds[`parameters.${p.name}`];
    const input = id && $(`#${id}`);
    if (!input || (p.group === 'expert' && !$('#expert-mode').checked)) continue;
    if (p.type === 'boolean') { if (input.checked !== (p.default === 'true')) parameters[p.name] = input.checked; continue; }
    if (p.type === 'choice') { if (input.value !== p.default) parameters[p.name] = input.value; continue; }
    const text = input.value.trim();
    if (text === '') continue;
    if (!validateField(p, input)) { ok = false; continue; }
    if (text !== p.default) parameters[p.name] = Number(text);
  }
  if (state.aoi) parameters.aoi = state.aoi;
  else if ($('#err-aoi').textContent) ok = false;
  if (!ok) { $('#err-form').textContent = 'Some fields need attention (see the messages beside them).'; return; }
  const body = { name, preset: $('#preset').value, images: state.selected.map((id) => ({ upload: id })), parameters };
  for (const f of finishingFields) { const v = $(`#file-${f}`).value; if (v) body[f] = { upload: v }; }
  if (!$('#mail-field').hidden && !$('#mail-job').disabled && !$('#mail-job').checked) body.mail = false;
  $('#submit-job').disabled = true;
  try {
    const job = await api('/processes/dsm-opt/execution', { method: 'POST', body });
    $('#new-job-link').href = `#/job/${job.jobID}`;
    step(3);
    location.hash = `#/job/${job.jobID}`;
  } catch (e) {
    showFieldErrors(e, 'err-form');
    if (e.status === 403 || e.status === 429) $('#err-form').textContent = e.message;
  } finally {
    $('#submit-job').disabled = false;
  }
});

// ---------------------------------------------------------------- jobs

// The list's filters and page are in the address (#/jobs?status=failed&offset=50…): a reload, a bookmark and
// the browser's Back button keep them. `limit` may be any page size the API takes (1–200).
const jobStatusFilters = { active: 'accepted,running', successful: 'successful', failed: 'failed', dismissed: 'dismissed' };
const jobProcesses = ['dsm-opt', 'dsm-difference'];

function jobsAddress() { return new URLSearchParams(location.hash.split('?')[1] || ''); }

/// Changes the list's address (`null` or '' drops a setting); a new filter or page size starts at the first page.
function setJobsAddress(changes) {
  const p = jobsAddress();
  if (!('offset' in changes)) p.delete('offset');
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === '' || v === false) p.delete(k); else p.set(k, String(v));
  }
  const q = p.toString();
  location.hash = q ? `#/jobs?${q}` : '#/jobs';
}

async function jobsView() {
  const routed = state.routes;
  const p = jobsAddress();
  const status = Object.hasOwn(jobStatusFilters, p.get('status') || '') ? p.get('status') : '';
  const process = jobProcesses.includes(p.get('process')) ? p.get('process') : '';
  const all = p.get('all') === 'true' && ['operator', 'admin'].includes(state.me.role);
  const limit = Math.min(200, Math.max(1, parseInt(p.get('limit'), 10) || 50));
  const offset = Math.max(0, parseInt(p.get('offset'), 10) || 0);
  $('#jobs-status').value = status;
  $('#jobs-process').value = process;
  $('#all-jobs').checked = all;
  const sizes = $('#jobs-limit');
  if (![...sizes.options].some((o) => Number(o.value) === limit)) sizes.append(el('option', {}, limit));
  sizes.value = String(limit);
  $('#jobs-newer').onclick = () => setJobsAddress({ offset: Math.max(0, offset - limit) || null });
  $('#jobs-older').onclick = () => setJobsAddress({ offset: offset + limit });
  const refresh = async () => {
    const q = new URLSearchParams({ limit, offset });
    if (status) q.set('status', jobStatusFilters[status]);
    if (process) q.set('processID', process);
    if (all) q.set('all', 'true');
    const page = await api(`/jobs?${q}`);
    // Past the end (jobs deleted meanwhile): the last page.
    if (page.jobs.length === 0 && offset > 0) {
      setJobsAddress({ offset: page.total > 0 ? Math.floor((page.total - 1) / limit) * limit || null : null });
      return;
    }
    const body = $('#jobs tbody');
    body.textContent = '';
    // Every user's jobs: whose each is.
    $('#jobs-owner-col').hidden = !all;
    for (const j of page.jobs) {
      body.append(el('tr', { class: `status-${j.status}`, 'data-job': j.jobID },
        el('td', {}, el('a', { href: `#/job/${j.jobID}` }, j.name || j.jobID)),
        el('td', { class: 'owner', hidden: !all }, j.ownerName || j.owner),
        el('td', { class: 'status' }, j.status), el('td', {}, j.stage || ''),
        el('td', {}, el('progress', { max: 100, value: j.progress, 'aria-label': `Progress of ${j.name}` }), ` ${j.progress} %`),
        el('td', {}, fmtDate(j.created)), el('td', {}, fmtDate(j.started)), el('td', {}, fmtDate(j.finished)),
        el('td', {}, j.resultsPurged ? 'purged' : fmtDate(j.purgeDate)), el('td', {}, round(j.cpuSeconds, 1))));
    }
    const filtered = Boolean(status || process);
    $('#jobs-empty').hidden = page.total > 0 || filtered;
    $('#jobs-none-match').hidden = page.total > 0 || !filtered;
    $('#jobs-pager').hidden = offset === 0 && page.total <= limit;
    $('#jobs-range').textContent = page.total > 0 ? `Jobs ${offset + 1}–${offset + page.jobs.length} of ${page.total}` : '';
    $('#jobs-newer').disabled = offset === 0;
    $('#jobs-older').disabled = offset + page.jobs.length >= page.total;
    const me = await api('/me');
    $('#usage').textContent = `This month: ${round(me.usage.cpuSecondsThisMonth, 1)} of ${round(me.quota.cpuSecondsPerMonth, 0)} CPU s; storage ${fmtBytes(me.usage.storageBytes)} of ${fmtBytes(me.quota.storageBytes)}.`;
  };
  await refresh();
  poll(routed, refresh);
}
$('#all-jobs').addEventListener('change', (e) => setJobsAddress({ all: e.target.checked ? 'true' : null }));
$('#jobs-status').addEventListener('change', (e) => setJobsAddress({ status: e.target.value }));
$('#jobs-process').addEventListener('change', (e) => setJobsAddress({ process: e.target.value }));
$('#jobs-limit').addEventListener('change', (e) => setJobsAddress({ limit: e.target.value === '50' ? null : e.target.value }));

async function jobView(id) {
  const routed = state.routes;
  let shownResults = false;
  const refresh = async () => {
    const j = await api(`/jobs/${id}`);
    $('#job-title').textContent = j.name || j.jobID;
    const add = facts('#job-facts');
    if (j.owner !== state.me.id) add('Owner', j.ownerName || j.owner);
    add('Status', el('span', { id: 'job-status', class: `status-${j.status}` }, j.status));
    add('Stage', j.stage || '—');
    add('Progress', `${j.progress} %`);
    add('Created', fmtDate(j.created)); add('Started', fmtDate(j.started)); add('Finished', fmtDate(j.finished));
    add('Purge date', j.resultsPurged ? 'purged' : fmtDate(j.purgeDate));
    add('CPU seconds', round(j.cpuSeconds, 1));
    add('Preset', j.preset);
    const ended = ['successful', 'failed', 'dismissed'].includes(j.status);
    if (j.mail) add('Mail', el('span', { id: 'job-mail', class: `delivery-${j.mail.state}` }, deliveryText(j.mail, ended, 'sent')));
    if (j.reminder) add('Purge reminder', el('span', { id: 'job-reminder', class: `delivery-${j.reminder.state}` }, `${deliveryText(j.reminder, true, 'mailed')}, due ${fmtDate(j.purgeReminder)}`));
    if (j.callback) add('Callback', el('span', { id: 'job-callback', class: `delivery-${j.callback.state}` }, deliveryText(j.callback, ended, 'delivered')));
    $('#job-progress').value = j.progress;
    $('#job-error').textContent = j.error || '';
    $('#job-cancel').hidden = !['accepted', 'running'].includes(j.status);
    // The API lets the owner or an admin delete an ended job (its results; a catalogue publication stays).
    $('#job-delete').hidden = !(ended && (j.owner === state.me.id || state.me.role === 'admin'));
    // Its owner may start again from its images and settings (a DSM job; the uploads are the owner's).
    $('#job-again').hidden = !(j.processID === 'dsm-opt' && j.owner === state.me.id);
    $('#job-parameters').textContent = JSON.stringify({ preset: j.preset, parameters: j.parameters || {}, inputs: j.inputs || [] }, null, 2);
    try { $('#job-log').textContent = await api(`/jobs/${id}/logs`); } catch (_) { /* no log yet */ }
    if (j.status === 'successful' && !shownResults) { shownResults = true; await results(j); }
    // Followed until the job has ended and its mail and callback have gone (or been given up).
    const settled = ended && ![j.mail, j.callback].some((d) => d && d.state === 'pending');
    if (settled && routed === state.routes) stopPolling();
    return settled;
  };
  $('#job-results').hidden = true;
  $('#job-cancel').onclick = async () => {
    try { await api(`/jobs/${id}`, { method: 'DELETE' }); await refresh(); } catch (e) { banner(e.message); }
  };
  $('#job-again').onclick = async () => {
    state.template = await api(`/jobs/${id}`);
    location.hash = '#/new';
  };
  $('#job-delete').onclick = async () => {
    const name = $('#job-title').textContent;
    if (!confirm(`Delete the job "${name}", its results and its log? This cannot be undone. A publication in the DSM catalogue stays until it is withdrawn.`)) return;
    try {
      await api(`/jobs/${id}`, { method: 'DELETE' });
      state.flash = `Job "${name}" deleted: its results no longer count against your storage.`;
      location.hash = '#/jobs';
    } catch (e) { banner(e.message); }
  };
  if (!await refresh()) poll(routed, refresh);
}

/// Where a job's mail (callback) stands, in words: `done` is what a delivered one is called.
function deliveryText(d, ended, done) {
  const tries = d.attempts === 1 ? '1 attempt' : `${d.attempts} attempts`;
  switch (d.state) {
    case 'delivered': return `${done} (${tries})`;
    case 'failed': return `not ${done}, given up after ${tries}: ${d.error || 'refused'}`;
    case 'skipped': return `not ${done}${d.error ? ` (${d.error})` : ''}`;
    default:
      if (!ended) return 'when the job ends';
      if (d.error) return `retrying: ${d.error} (${tries}; next ${fmtDate(d.nextAttempt)})`;
      return 'being sent';
  }
}

/// A Leaflet layer whose tiles are fetched with the bearer token (an <img> cannot send it).
const AuthTiles = L.GridLayer.extend({
  createTile(coords, done) {
    const tile = document.createElement('div');
    fetch(this.options.url.replace('{z}', coords.z).replace('{x}', coords.x).replace('{y}', coords.y), { headers: { Authorization: `Bearer ${state.token}` } })
      .then((r) => {
        if (r.status === 204) return null;   // no data under this tile
        if (!r.ok) throw new Error(`tile HTTP ${r.status}`);
        return r.blob();
      })
      .then((b) => {
        if (!b) { done(null, tile); return; }
        const img = document.createElement('img');
        img.alt = '';
        img.width = 256; img.height = 256;
        img.onload = () => { URL.revokeObjectURL(img.src); img.dataset.loaded = '1'; done(null, tile); };
        img.onerror = () => done(new Error('tile image unreadable'), tile);
        img.src = URL.createObjectURL(b);
        tile.append(img);
      })
      .catch((e) => done(e, tile));
    return tile;
  },
});

async function results(job) {
  $('#job-results').hidden = false;
  const [manifest, mapInfo] = await Promise.all([api(`/jobs/${job.jobID}/results/manifest.json`), api(`/jobs/${job.jobID}/map`)]);
  // Plain links, signed for a day (POST /jobs/{id}/download-links): the browser downloads them itself, to disk
  // and resumable, where a download through fetch would hold the whole file in memory.
  const links = await api(`/jobs/${job.jobID}/download-links`, { method: 'POST', body: { expiresIn: 86400 } });
  const signed = (path) => `${BASE}${path}?${links.query}`;
  const body = $('#products tbody');
  body.textContent = '';
  for (const p of manifest.products) {
    const link = el('a', { href: signed(`/jobs/${job.jobID}/results/${encodeURIComponent(p.file)}`), download: p.file }, p.file);
    body.append(el('tr', {}, el('td', {}, p.code), el('td', {}, link), el('td', {}, fmtBytes(p.bytes)), el('td', {}, p.description)));
  }
  // Everything at once: the results document's files in one zip (the products, the manifest, the STAC item).
  const zipFile = `dsmopt-${job.jobID}.zip`;
  const total = manifest.products.reduce((sum, p) => sum + (p.bytes || 0), 0);
  $('#products-zip').textContent = '';
  $('#products-zip').append('Every product in one zip archive: ', el('a', { href: signed(`/jobs/${job.jobID}/results.zip`), download: zipFile }, zipFile),
    ` (${fmtBytes(total)}, with the manifest and the STAC item)`);
  $('#products-links').textContent = `These links open without your token until ${fmtDate(links.expires)}; reload the page for new ones.`;
  $('#share-url').hidden = true;
  $('#share-note').textContent = '';
  $('#share').onclick = async () => {
    try {
      const days = Number($('#share-days').value);
      const shared = await api(`/jobs/${job.jobID}/download-links`, { method: 'POST', body: { expiresIn: days * 86400 } });
      $('#share-url').value = shared.archive;
      $('#share-url').hidden = false;
      $('#share-url').select();
      $('#share-note').textContent = `Anyone with this address can download every result until ${fmtDate(shared.expires)}`
        + (job.purgeDate && new Date(shared.expires) < new Date(Date.now() + days * 86400e3 - 60e3) ? ' (the purge date)' : '')
        + '. Replacing your token (Account) voids it.';
    } catch (e) { banner(e.message); }
  };
  if (!state.config.basemapURL && state.config.basemapURL !== null) state.config = await api('/portal/config.json');
  const map = baseMap('map-result');
  setTimeout(() => map.invalidateSize(), 0);
  if (map._layers2) for (const l of map._layers2) map.removeLayer(l);
  map._layers2 = [];
  const sel = $('#layer-select');
  sel.textContent = '';
  const layers = {};
  for (const l of mapInfo.layers) {
    sel.append(el('option', { value: l.name }, l.title));
    layers[l.name] = new AuthTiles({ url: `${BASE}/jobs/${job.jobID}/tiles/${l.name}/{z}/{x}/{y}.png`, maxZoom: 22, maxNativeZoom: 20, className: `layer-${l.name}` });
  }
  if (mapInfo.footprint) {
    const fp = L.polygon(lonLat(mapInfo.footprint), { color: '#333', weight: 1, fill: false, dashArray: '3' }).bindTooltip('DSM extent').addTo(map);
    map._layers2.push(fp);
    map.fitBounds(fp.getBounds());
  }
  const aoi = job.parameters && job.parameters.aoi;
  if (aoi && typeof aoi === 'object') {
    const g = aoi.type === 'Feature' ? aoi.geometry : aoi;
    if (g && g.coordinates) map._layers2.push(L.polygon(lonLat(g.coordinates[0]), { color: '#ff7f00', weight: 2, fill: false }).bindTooltip('area of interest').addTo(map));
  }
  let current = null;
  const pick = async () => {
    if (current) map.removeLayer(current);
    current = layers[sel.value];
    if (!current) return;
    current.setOpacity($('#layer-opacity').value / 100);
    current.addTo(map);
    map._layers2.push(current);
    const legend = $('#legend');
    legend.textContent = '';
    try {
      const lg = await api(`/jobs/${job.jobID}/tiles/${sel.value}/legend`);
      if (lg.kind !== 'rgb') {
        legend.append(el('span', {}, `${round(lg.minimum, 2)} `),
          el('span', { class: 'ramp', style: `background: linear-gradient(to right, ${lg.colours.join(', ')})` }),
          el('span', {}, ` ${round(lg.maximum, 2)} ${lg.units || ''}`));
      }
    } catch (_) { /* no legend */ }
  };
  sel.onchange = pick;
  $('#layer-opacity').oninput = () => current && current.setOpacity($('#layer-opacity').value / 100);
  if (layers.hillshade) sel.value = 'hillshade';
  await pick();
  catalogueState(job).catch((e) => banner(e.message));
  let probeTimer = null;
  map.off('mousemove');
  map.on('mousemove', (e) => {
    const { lat, lng } = e.latlng;
    $('#cursor').textContent = `${lat.toFixed(6)}, ${lng.toFixed(6)}`;
    clearTimeout(probeTimer);
    probeTimer = setTimeout(async () => {
      try {
        const v = await api(`/jobs/${job.jobID}/probe?lon=${lng}&lat=${lat}`);
        if (v.height !== undefined) $('#cursor').textContent = `${lat.toFixed(6)}, ${lng.toFixed(6)} — height ${v.height.toFixed(2)} m${v.score !== undefined ? `, score ${v.score.toFixed(2)}` : ''}`;
        else if (v.difference !== undefined) $('#cursor').textContent = `${lat.toFixed(6)}, ${lng.toFixed(6)} — change B − A ${v.difference.toFixed(2)} m`;
      } catch (_) { /* outside */ }
    }, 200);
  });
}

/// Publish / withdraw: whether the catalogue lists the job's item (a search by id).
async function catalogueState(job) {
  const found = await api(`/stac/search?ids=${encodeURIComponent(job.jobID)}`);
  const published = found.features.length > 0;
  $('#catalogue-state').textContent = published
    ? 'Published: every user of this service (and the DINAMIS catalogue) can find it in the STAC catalogue at /stac. It stays after the purge date until withdrawn, and counts against your storage quota.'
    : 'Not published: only you (and operators) can see this job.';
  $('#publish').hidden = published;
  $('#withdraw').hidden = !published;
  $('#publish').onclick = async () => {
    try { await api(`/jobs/${job.jobID}/publish`, { method: 'POST' }); await catalogueState(job); } catch (e) { banner(e.message); }
  };
  $('#withdraw').onclick = async () => {
    try { await api(`/jobs/${job.jobID}/publish`, { method: 'DELETE' }); await catalogueState(job); } catch (e) { banner(e.message); }
  };
}

// ---------------------------------------------------------------- account

async function accountView() {
  const me = await api('/me');
  state.me = me;
  const add = facts('#account-facts');
  add('Name', me.name);
  add('Role', me.role);
  add('CPU this month', `${round(me.usage.cpuSecondsThisMonth, 1)} of ${round(me.quota.cpuSecondsPerMonth, 0)} s`);
  add('Storage', `${fmtBytes(me.usage.storageBytes)} of ${fmtBytes(me.quota.storageBytes)} (uploads and results)`);
  add('Jobs at a time', `${me.usage.activeJobs} queued or running, at most ${me.quota.maxConcurrentJobs}`);
  add('Largest image', fmtBytes(me.quota.maxInputBytes));
  $('#mail-hint').textContent = me.mailConfigured
    ? 'With an address, the service mails you when each job you submit from now on ends — finished, with the links to its results and their purge date, or failed, with the reason.'
    : 'This service has no mail server set up: nothing is mailed until its administrator sets one. You can record your address already.';
  $('#email').value = me.email || '';
  $('#email-remove').hidden = !me.email;
}
$('#email-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#err-email').textContent = ''; $('#email-message').textContent = '';
  $('#email').removeAttribute('aria-invalid');
  try {
    const r = await api('/me/email', { method: 'PUT', body: { email: $('#email').value.trim() } });
    await accountView();
    $('#email-message').textContent = `Saved: mail about your jobs goes to ${r.email}.`;
  } catch (e) {
    $('#err-email').textContent = e.message;
    $('#email').setAttribute('aria-invalid', 'true');
  }
});
$('#email-remove').addEventListener('click', async () => {
  $('#err-email').textContent = ''; $('#email-message').textContent = '';
  try {
    await api('/me/email', { method: 'DELETE' });
    await accountView();
    $('#email-message').textContent = 'Address removed: no more mail about your jobs.';
  } catch (e) { $('#err-email').textContent = e.message; }
});

// ---------------------------------------------------------------- operators: presets

async function presetsView() {
  const list = await api('/presets');
  const sel = $('#preset-edit-name');
  sel.textContent = '';
  for (const p of list) sel.append(el('option', { value: p.name }, p.name));
  const load = () => { const p = list.find((x) => x.name === sel.value); $('#preset-json').value = p ? JSON.stringify(p, null, 2) : ''; };
  sel.onchange = load;
  load();
}
$('#preset-save').addEventListener('click', async () => {
  $('#preset-error').textContent = ''; $('#preset-saved').textContent = '';
  const name = $('#preset-new-name').value.trim() || $('#preset-edit-name').value;
  let body;
  try { body = JSON.parse($('#preset-json').value); } catch (e) { $('#preset-error').textContent = `not valid JSON: ${e.message}`; return; }
  try {
    await api(`/presets/${encodeURIComponent(name)}`, { method: 'PUT', body });
    $('#preset-saved').textContent = `Preset ${name} saved.`;
    state.process = null;
  } catch (e) {
    const errs = (e.problem.errors || []).map((x) => `${x.field}: ${x.message}`).join('; ');
    $('#preset-error').textContent = errs || e.message;
  }
});

// ---------------------------------------------------------------- administrators: users

async function usersView() {
  const users = await api('/admin/users');
  const body = $('#users tbody');
  body.textContent = '';
  for (const u of users) {
    const input = (key, value, used) => {
      const id = `quota-${u.id}-${key}`;
      return el('td', {}, el('label', { for: id, class: 'sr-only' }, `${key} of ${u.name}`),
        el('input', { id, 'data-key': key, value, inputmode: 'numeric', size: 12 }), used !== undefined ? el('small', {}, ` (${used})`) : null);
    };
    const save = el('button', { type: 'button' }, 'Save quota');
    const reset = el('button', { type: 'button' }, 'New token');
    const row = el('tr', { 'data-user': u.name }, el('td', {}, u.name), el('td', {}, u.role), el('td', { class: 'email' }, u.email || '—'),
      input('cpuSecondsPerMonth', u.quota.cpuSecondsPerMonth, round(u.usage.cpuSecondsThisMonth, 1)),
      input('storageBytes', u.quota.storageBytes, fmtBytes(u.usage.storageBytes)),
      input('maxConcurrentJobs', u.quota.maxConcurrentJobs), input('maxInputBytes', u.quota.maxInputBytes), el('td', {}, save, reset));
    save.addEventListener('click', async () => {
      $('#users-error').textContent = ''; $('#users-message').textContent = '';
      const patch = {};
      for (const i of row.querySelectorAll('input')) {
        const v = Number(i.value);
        if (!Number.isFinite(v) || v < 0 || (i.dataset.key !== 'cpuSecondsPerMonth' && !Number.isInteger(v))) {
          $('#users-error').textContent = `${u.name}: ${i.dataset.key} must be a non-negative ${i.dataset.key === 'cpuSecondsPerMonth' ? 'number' : 'integer'}`;
          return;
        }
        patch[i.dataset.key] = v;
      }
      try { await api(`/admin/users/${u.id}/quota`, { method: 'PUT', body: patch }); $('#users-message').textContent = `Quota of ${u.name} saved.`; }
      catch (e) { $('#users-error').textContent = `${u.name}: ${e.message}`; }
    });
    reset.addEventListener('click', async () => {
      if (!confirm(`Give ${u.name} a new token? The current one stops working at once.`)) return;
      try { const r = await api(`/admin/users/${u.id}/token`, { method: 'POST' }); $('#users-message').textContent = `New token of ${u.name} (shown once): ${r.token}`; }
      catch (e) { $('#users-error').textContent = e.message; }
    });
    body.append(row);
  }
}
$('#new-user').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#users-error').textContent = ''; $('#users-message').textContent = '';
  try {
    const body = { name: $('#new-user-name').value.trim(), role: $('#new-user-role').value };
    const email = $('#new-user-email').value.trim();
    if (email) body.email = email;
    const r = await api('/admin/users', { method: 'POST', body });
    $('#users-message').textContent = `User ${r.user.name} created. Token (shown once): ${r.token}`;
    $('#new-user-name').value = ''; $('#new-user-email').value = '';
    await usersView();
  } catch (e) { $('#users-error').textContent = e.message; }
});

route();
