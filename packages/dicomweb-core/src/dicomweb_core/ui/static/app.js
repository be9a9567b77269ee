// The study browser: QIDO-RS search, a study page with series thumbnails, STOW-RS upload with a
// result per file, DELETE with confirmation. Plain DOM, no framework; data is only ever written
// with textContent (never as HTML).
'use strict';

const T = {
  patientName: '00100010', patientId: '00100020', studyDate: '00080020', studyTime: '00080030',
  studyDescription: '00081030', modalities: '00080061', accession: '00080050',
  seriesCount: '00201206', studyInstances: '00201208', study: '0020000D', series: '0020000E',
  seriesNumber: '00200011', modality: '00080060', seriesDescription: '0008103E',
  seriesInstances: '00201209', failedSequence: '00081198', referencedSequence: '00081199',
  failureReason: '00081197',
};
const FAILURE = {
  0x0110: 'processing failure', 0xa700: 'out of resources', 0xa900: 'study does not match',
  0xc000: 'not DICOM, truncated or missing UIDs', 0xc122: 'transfer syntax not supported',
};
const STUDY_FIELDS = [T.studyDescription, T.modalities, T.seriesCount, T.studyInstances].join(',');
const UPLOAD_CONCURRENCY = 3;

const $ = (selector) => document.querySelector(selector);
const config = { dicomweb: '/dicomweb', viewer: null };
const tokenInput = $('#token');
tokenInput.value = sessionStorage.getItem('dicomweb-token') || '';
tokenInput.addEventListener('change', () => {
  sessionStorage.setItem('dicomweb-token', tokenInput.value.trim());
  route();
});

function authHeaders(extra = {}) {
  const token = tokenInput.value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

function explain(status, text) {
  if (status === 401) return '401: this server needs a bearer token (Token, top right)';
  if (status === 403) return '403: the token does not allow this';
  return `${status}: ${(text || '').trim().slice(0, 300)}`;
}

async function api(path, options = {}) {
  const resp = await fetch(config.dicomweb + path, { ...options, headers: authHeaders(options.headers) });
  if (!resp.ok && resp.status !== 404) throw new Error(explain(resp.status, await resp.text()));
  return resp;
}

async function qido(path) {
  const resp = await api(path, { headers: { Accept: 'application/dicom+json' } });
  if (resp.status === 204 || resp.status === 404) return [];
  const text = await resp.text();
  return text ? JSON.parse(text) : [];
}

function value(ds, tag) {
  const element = ds[tag];
  if (!element || !element.Value || element.Value.length === 0) return '';
  return element.Value.map((v) => (element.vr === 'PN' ? v.Alphabetic || '' : String(v))).join(', ');
}

function formatDate(text) {
  return /^\d{8}$/.test(text) ? `${text.slice(0, 4)}-${text.slice(4, 6)}-${text.slice(6)}` : text;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function say(text, isError = false) {
  const message = $('#message');
  message.hidden = !text;
  message.textContent = text || '';
  message.className = isError ? 'error' : '';
}

function show(id) {
  for (const section of document.querySelectorAll('main > section')) section.hidden = section.id !== id;
}

// ------------------------------------------------------------------------------ study list

function searchQuery() {
  const form = new FormData($('#search'));
  const params = new URLSearchParams({ includefield: STUDY_FIELDS, limit: '200' });
  const name = (form.get('PatientName') || '').trim();
  if (name) params.set('PatientName', /[*?]/.test(name) ? name : `${name}*`);
  for (const key of ['PatientID', 'AccessionNumber', 'ModalitiesInStudy']) {
    const v = (form.get(key) || '').trim();
    if (v) params.set(key, key === 'ModalitiesInStudy' ? v.toUpperCase() : v);
  }
  const from = (form.get('from') || '').replaceAll('-', '');
  const to = (form.get('to') || '').replaceAll('-', '');
  if (from || to) params.set('StudyDate', from === to ? from : `${from}-${to}`);
  return params;
}

async function showStudies() {
  show('studies-view');
  const body = $('#studies tbody');
  const studies = await qido(`/studies?${searchQuery()}`);
  body.replaceChildren();
  for (const ds of studies) {
    const uid = value(ds, T.study);
    const row = body.insertRow();
    row.className = 'link';
    row.dataset.study = uid;
    cell(row, value(ds, T.patientName));
    cell(row, value(ds, T.patientId));
    cell(row, formatDate(value(ds, T.studyDate)));
    cell(row, value(ds, T.studyDescription));
    cell(row, value(ds, T.modalities));
    cell(row, value(ds, T.accession));
    cell(row, value(ds, T.seriesCount), 'num');
    cell(row, value(ds, T.studyInstances), 'num');
    row.addEventListener('click', () => { location.hash = `#/study/${uid}`; });
  }
  $('#studies-count').textContent = `${studies.length} ${studies.length === 1 ? 'study' : 'studies'}`;
}

$('#search').addEventListener('submit', (event) => {
  event.preventDefault();
  run(showStudies);
});
$('#search').addEventListener('reset', () => setTimeout(() => run(showStudies)));

// ------------------------------------------------------------------------------ study page

async function thumbnail(img, path) {
  const resp = await api(path, { headers: { Accept: 'image/png, image/jpeg;q=0.9' } });
  if (!resp.ok) {
    img.alt = `no thumbnail (${resp.status})`;
    return;
  }
  img.src = URL.createObjectURL(await resp.blob());
  await img.decode().catch(() => {});
  img.dataset.loaded = 'true';
}

async function deleteResource(path, what) {
  if (!confirm(`Delete ${what}? This cannot be undone.`)) return false;
  const resp = await api(path, { method: 'DELETE' });
  if (resp.status !== 204) throw new Error(explain(resp.status, await resp.text()));
  return true;
}

async function showStudy(uid) {
  show('study-view');
  const [study] = await qido(`/studies?StudyInstanceUID=${encodeURIComponent(uid)}&includefield=${STUDY_FIELDS}`);
  if (!study) {
    say(`Study ${uid} is not (or no longer) stored.`, true);
    return;
  }
  const patient = value(study, T.patientName) || '(no name)';
  $('#study-title').textContent = `${patient} — ${value(study, T.studyDescription) || 'study'}`;
  const facts = $('#study-facts');
  facts.replaceChildren();
  for (const [label, text] of [
    ['Patient ID', value(study, T.patientId)], ['Date', formatDate(value(study, T.studyDate))],
    ['Accession', value(study, T.accession)], ['Modalities', value(study, T.modalities)],
    ['Series / instances', `${value(study, T.seriesCount)} / ${value(study, T.studyInstances)}`],
    ['Study Instance UID', uid],
  ]) {
    facts.append(Object.assign(document.createElement('dt'), { textContent: label }));
    facts.append(Object.assign(document.createElement('dd'), { textContent: text }));
  }
  const viewer = $('#open-viewer');
  viewer.hidden = !config.viewer;
  if (config.viewer) {
    viewer.href = `${config.viewer}${config.viewer.includes('?') ? '&' : '?'}StudyInstanceUIDs=${encodeURIComponent(uid)}`;
  }
  $('#delete-study').onclick = () => run(async () => {
    const n = value(study, T.studyInstances);
    if (await deleteResource(`/studies/${uid}`, `the study of ${patient} (${n} instances)`)) {
      location.hash = '#/';
      say(`Deleted the study of ${patient}.`);
    }
  }, false);
  const body = $('#series tbody');
  body.replaceChildren();
  const series = await qido(`/studies/${encodeURIComponent(uid)}/series?includefield=${T.seriesDescription},${T.seriesInstances}`);
  series.sort((a, b) => Number(value(a, T.seriesNumber) || 0) - Number(value(b, T.seriesNumber) || 0));
  const pending = [];
  for (const ds of series) {
    const seriesUid = value(ds, T.series);
    const row = body.insertRow();
    row.dataset.series = seriesUid;
    const img = Object.assign(document.createElement('img'), { className: 'thumb', alt: 'thumbnail' });
    row.insertCell().append(img);
    cell(row, value(ds, T.seriesNumber), 'num');
    cell(row, value(ds, T.modality));
    cell(row, value(ds, T.seriesDescription));
    cell(row, value(ds, T.seriesInstances), 'num');
    const remove = Object.assign(document.createElement('button'), { textContent: 'Delete series', className: 'danger' });
    remove.onclick = () => run(async () => {
      if (await deleteResource(`/studies/${uid}/series/${seriesUid}`, `series ${value(ds, T.seriesNumber)} (${value(ds, T.seriesInstances)} instances)`)) {
        await showStudy(uid);
      }
    }, false);
    row.insertCell().append(remove);
    pending.push(thumbnail(img, `/studies/${uid}/series/${seriesUid}/thumbnail`));
  }
  await Promise.all(pending);
}

// ------------------------------------------------------------------------------ upload

function boundary() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return `dicomweb-ui-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

function storeFile(file, progress) {
  // One file per request: a result per file, and one bad file never holds up the others.
  const b = boundary();
  const body = new Blob([`--${b}\r\nContent-Type: application/dicom\r\n\r\n`, file, `\r\n--${b}--\r\n`]);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `${config.dicomweb}/studies`);
    for (const [k, v] of Object.entries(authHeaders({
      'Content-Type': `multipart/related; type="application/dicom"; boundary=${b}`,
      Accept: 'application/dicom+json',
    }))) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = e.loaded / e.total; };
    xhr.onerror = () => resolve({ ok: false, text: 'network error' });
    xhr.onload = () => {
      progress.value = 1;
      if (xhr.status === 200) return resolve({ ok: true, text: 'stored' });
      let reason = '';
      try {
        const failed = JSON.parse(xhr.responseText)[T.failedSequence];
        const code = failed.Value[0][T.failureReason].Value[0];
        reason = `${FAILURE[code] || 'failed'} (0x${code.toString(16).toUpperCase()})`;
      } catch {
        reason = explain(xhr.status, xhr.responseText);
      }
      resolve({ ok: false, text: reason });
    };
    xhr.send(body);
  });
}

async function upload(files) {
  location.hash = '#/upload';
  show('upload-view');
  const body = $('#uploads tbody');
  body.replaceChildren();
  const jobs = files.map((file) => {
    const row = body.insertRow();
    row.dataset.file = file.webkitRelativePath || file.relativePath || file.name;
    cell(row, row.dataset.file);
    cell(row, `${(file.size / 1024).toFixed(1)} KiB`, 'num');
    const progress = document.createElement('progress');
    progress.max = 1;
    progress.value = 0;
    row.insertCell().append(progress);
    const result = cell(row, 'waiting');
    return { file, progress, result, row };
  });
  let stored = 0;
  let failed = 0;
  const summary = $('#upload-summary');
  const update = () => { summary.textContent = `${stored} stored, ${failed} failed, ${jobs.length - stored - failed} to go`; };
  update();
  let next = 0;
  async function worker() {
    while (next < jobs.length) {
      const job = jobs[next++];
      job.result.textContent = 'sending';
      const outcome = await storeFile(job.file, job.progress);
      job.result.textContent = outcome.text;
      job.result.className = outcome.ok ? 'ok' : 'failed';
      job.row.dataset.result = outcome.ok ? 'stored' : 'failed';
      if (outcome.ok) stored++; else failed++;
      update();
    }
  }
  await Promise.all(Array.from({ length: UPLOAD_CONCURRENCY }, worker));
  summary.dataset.done = 'true';
}

async function entryFiles(entry, prefix = '') {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    file.relativePath = prefix + file.name;
    return [file];
  }
  const reader = entry.createReader();
  const all = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) all.push(...(await entryFiles(child, `${prefix}${entry.name}/`)));
  }
  return all;
}

const drop = $('#drop');
drop.addEventListener('dragover', (event) => { event.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  const entries = Array.from(event.dataTransfer.items, (item) => item.webkitGetAsEntry()).filter(Boolean);
  run(async () => upload((await Promise.all(entries.map((e) => entryFiles(e)))).flat()), false);
});
for (const id of ['#files', '#folder']) {
  $(id).addEventListener('change', (event) => {
    const files = Array.from(event.target.files);
    event.target.value = '';
    if (files.length) run(() => upload(files), false);
  });
}

// ------------------------------------------------------------------------------ routing

async function run(action, clear = true) {
  if (clear) say('');
  document.body.dataset.busy = 'true';
  try {
    await action();
  } catch (err) {
    say(String(err.message || err), true);
  } finally {
    delete document.body.dataset.busy;
  }
}

function route() {
  const hash = location.hash;
  if (hash.startsWith('#/study/')) return run(() => showStudy(decodeURIComponent(hash.slice(8))), false);
  if (hash === '#/upload') {
    show('upload-view');
    return undefined;
  }
  return run(showStudies, false);
}

window.addEventListener('hashchange', route);
fetch('config.json')
  .then((r) => r.json())
  .then((c) => Object.assign(config, c))
  .catch(() => {})
  .finally(route);
