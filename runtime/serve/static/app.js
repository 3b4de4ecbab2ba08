// The page's behaviour: one stream's live picture, narration and questions, plus photo uploads.
// Plain modern JavaScript, no framework and no build step, so the page works offline on the
// device itself. Screen readers first: what narration says goes to a polite live region, answers
// to an assertive one, errors to role="alert"; speech in the browser is optional on top.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    polite: $('live-polite'), assertive: $('live-assertive'), error: $('error'),
    connection: $('connection'), noStreams: $('no-streams'), frame: $('frame'), caption: $('caption'),
    frameNote: $('frame-note'), askForm: $('ask-form'), question: $('question'), askButton: $('ask-button'),
    answer: $('answer'), answerDetail: $('answer-detail'),
    history: $('history'), historyEmpty: $('history-empty'),
    streamSelect: $('stream-select'), streamState: $('stream-state'), refreshStreams: $('refresh-streams'),
    removeStream: $('remove-stream'), addForm: $('add-stream-form'), source: $('stream-source'),
    addButton: $('add-stream'), photoForm: $('photo-form'), photo: $('photo'), photoQuestion: $('photo-question'),
    describePhoto: $('describe-photo'), askPhoto: $('ask-photo'), photoResult: $('photo-result'),
    speak: $('speak'), speechNote: $('speech-note'), pauseFrame: $('pause-frame'), refreshRate: $('refresh-rate'),
    motionNote: $('motion-note'),
  };

  const HISTORY_KEPT = 50; // the list is capped instead of scrolling in a box (see style.css)
  const BURST_MS = 300; // narration says things >= 2 s apart: events closer than this are a replay
  const STREAM_POLL_MS = 15000; // states and counts in the picker; a removed stream is noticed too
  const REOPEN_MAX_MS = 30000;
  const MESSAGES = {
    lost: 'Connection to the stream lost. Reconnecting.',
    restored: 'Connection restored.',
    ended: 'The stream has ended.',
    removed: 'The stream was removed.',
  };

  // --- the token -------------------------------------------------------------------------------
  // ?token=... or #token=...: sent as a Bearer header on fetch, and as ?token= where a browser
  // cannot set headers (EventSource, <img>).
  const token = new URLSearchParams(location.search).get('token')
    || new URLSearchParams(location.hash.replace(/^#/, '')).get('token') || '';

  /** A same-origin URL with the token (when there is one) and extra query parameters. */
  function withToken(path, extra = {}) {
    const url = new URL(path, location.origin);
    if (token) url.searchParams.set('token', token);
    for (const [key, value] of Object.entries(extra)) url.searchParams.set(key, value);
    return url.pathname + url.search;
  }

  class ApiError extends Error {}

  /** fetch() a JSON API: returns the parsed body, or throws ApiError with the server's one-line message. */
  async function api(path, { method = 'GET', json, form } = {}) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (form) {
      body = form; // multipart: the browser sets the boundary
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body });
    } catch {
      throw new ApiError('Cannot reach the server. Check the connection and try again.');
    }
    let data = null;
    try { data = await response.json(); } catch { /* not JSON: described below */ }
    if (!response.ok) {
      let message = (data && data.error) || `The server answered ${response.status} ${response.statusText}.`;
      if (response.status === 401 && !token) {
        message += ' Open this page with ?token=YOUR_TOKEN at the end of its address.';
      }
      const retry = response.headers.get('Retry-After');
      if (response.status === 503 && retry) message += ` Try again in ${retry} seconds.`;
      const error = new ApiError(message);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // --- saying things ----------------------------------------------------------------------------
  /** Add a line to a live region. A new node each time, so the same words twice are still announced. */
  function announce(region, text) {
    const line = document.createElement('p');
    line.textContent = text;
    region.append(line);
    while (region.childElementCount > 5) region.firstElementChild.remove();
  }

  // Settings kept between visits; storage can be refused (privacy modes): then just not kept.
  const store = {
    get(key) { try { return localStorage.getItem(key); } catch { return null; } },
    set(key, value) { try { localStorage.setItem(key, value); } catch { /* not kept */ } },
  };

  function showError(message) { el.error.textContent = message; }
  function clearError() { el.error.textContent = ''; }

  const synth = ('speechSynthesis' in window && typeof window.SpeechSynthesisUtterance === 'function')
    ? window.speechSynthesis : null;

  /** Say ``text`` with the browser's voice, if wanted. Answers interrupt; a caption replaces any
   * speech still queued (a stale caption is never said late, as in narration itself). */
  function speak(text, { interrupt = false } = {}) {
    if (!synth || !el.speak.checked || !text) return;
    if (interrupt || synth.pending) synth.cancel();
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = 'en';
    synth.speak(utterance);
  }

  function setupSpeech() {
    if (!synth) {
      el.speak.checked = false;
      el.speak.disabled = true;
      el.speechNote.textContent = 'This browser cannot speak (it has no Web Speech API). Your screen reader '
        + 'still announces captions and answers, and they are shown on the page.';
      return;
    }
    el.speak.checked = store.get('edgevlm.speak') !== 'off'; // on by default
    el.speak.addEventListener('change', () => {
      store.set('edgevlm.speak', el.speak.checked ? 'on' : 'off');
      if (!el.speak.checked) synth.cancel();
    });
  }

  // Enter toggles the checkboxes too (Space does natively): a switch should answer both.
  function enterToggles(checkbox) {
    checkbox.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        checkbox.click();
      }
    });
  }

  // --- history ------------------------------------------------------------------------------------
  function clock(wall) {
    const when = wall ? new Date(wall * 1000) : new Date();
    return when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  /** Newest first; ``wall`` (server seconds) when the event has it. Not a live region: the live
   * regions already said it. */
  function addHistory(text, wall) {
    const item = document.createElement('li');
    const time = document.createElement('span');
    time.className = 'when';
    time.textContent = `${clock(wall)}: `;
    item.append(time, text);
    el.history.prepend(item);
    while (el.history.childElementCount > HISTORY_KEPT) el.history.lastElementChild.remove();
    el.historyEmpty.hidden = true;
  }

  // --- the stream: state ---------------------------------------------------------------------------
  const stream = {
    id: null, // the selected stream's id
    info: null, // its object from GET /v1/streams
    source: null, // its EventSource
    lastId: 0, // the newest event id seen: where a reopened event stream resumes (?after=)
    ended: false, // summary, stream_error or removed: no reconnecting
    quiet: false, // followed after it had ended: its replay is history, not news (nothing announced)
    lost: false, // "lost" announced, "restored" not yet
    reopenTimer: null,
    reopenDelay: 1000,
    burst: null, // the newest utterance of a burst, said when the burst is over
    burstTimer: null,
    asked: new Set(), // questions this page asked: their answers come back on the ask response
    removing: null, // the id this page is deleting: its summary arrives before the DELETE answers
  };
  let streams = [];

  function streamUrl(id, tail) { return `/v1/streams/${encodeURIComponent(id)}${tail}`; }

  function setConnection(text) { el.connection.textContent = text; }

  function setCaption(text) {
    el.caption.textContent = text;
    describeFrame();
  }

  // The picture's alt text says what it is: the newest frame, and what was last said about it.
  function describeFrame() {
    const source = stream.info ? stream.info.source : 'the stream';
    const paused = el.pauseFrame.checked ? ' (paused)' : '';
    const said = el.caption.textContent && stream.info ? ` Latest caption: ${el.caption.textContent}` : '';
    el.frame.alt = `Newest picture from ${source}${paused}.${said}`;
  }

  // --- the stream: events ------------------------------------------------------------------------
  function closeEvents() {
    clearTimeout(stream.reopenTimer);
    if (stream.source) {
      stream.source.close();
      stream.source = null;
    }
  }

  function openEvents() {
    closeEvents();
    if (!stream.id || stream.ended) return;
    // ?after= resumes where we left off (a fresh EventSource has no Last-Event-ID to send).
    const extra = stream.lastId ? { after: stream.lastId } : {};
    const source = new EventSource(withToken(streamUrl(stream.id, '/events'), extra));
    stream.source = source;
    source.onopen = () => {
      if (source !== stream.source) return;
      stream.reopenDelay = 1000;
      if (stream.lost) {
        stream.lost = false;
        announce(el.polite, MESSAGES.restored);
      }
      if (!stream.quiet) setConnection(`Connected to ${stream.info ? stream.info.source : 'the stream'}.`);
    };
    source.onmessage = (message) => {
      if (source !== stream.source) return;
      const id = Number(message.lastEventId);
      if (id > 0) {
        if (id <= stream.lastId) return; // already handled (a server that resent it)
        stream.lastId = id;
      }
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      handleEvent(event);
    };
    source.onerror = async () => {
      if (source !== stream.source) return;
      if (stream.ended) {
        closeEvents(); // the server closed the stream after its last event: no reconnecting
        return;
      }
      // Removed or ended on the server: say that, not "reconnecting".
      if (await streamIsOver() || source !== stream.source) return;
      if (!stream.lost && source.readyState !== EventSource.OPEN) {
        stream.lost = true;
        announce(el.polite, MESSAGES.lost);
        setConnection(MESSAGES.lost);
      }
      // EventSource retries by itself while CONNECTING; CLOSED (e.g. an HTTP error) is for us.
      if (source.readyState === EventSource.CLOSED) scheduleReopen();
    };
  }

  function scheduleReopen() {
    clearTimeout(stream.reopenTimer);
    stream.reopenTimer = setTimeout(openEvents, stream.reopenDelay);
    stream.reopenDelay = Math.min(stream.reopenDelay * 2, REOPEN_MAX_MS);
  }

  /** After an error: is the stream still on the server? Removed or ended: say so, stop, and
   * return true. False while it runs, or when the server cannot be reached (keep trying). */
  async function streamIsOver() {
    const id = stream.id;
    let list;
    try { list = (await api('/v1/streams')).streams || []; } catch { return false; }
    if (id !== stream.id) return true; // another stream is followed now: this one is not ours
    if (stream.ended) return true;
    const info = list.find((s) => s.id === id);
    if (!info) {
      finish(MESSAGES.removed, { refresh: false });
    } else if (info.state === 'ended' || info.state === 'failed') {
      finish(info.error ? `${MESSAGES.ended} ${info.error}` : MESSAGES.ended, { refresh: false });
    }
    const over = stream.ended;
    renderStreams(list); // may follow another stream when this one was removed
    return over;
  }

  /** The stream's last event came (summary): ended by itself, or removed? A server stops a
   * deleted stream first (its followers get the summary) and then drops it from the list, so
   * a removal by someone else may still be said as "ended": true either way. */
  async function endedOrRemoved() {
    const id = stream.id;
    closeEvents(); // nothing follows a summary; a reconnect would only replay it
    let gone = stream.removing === id;
    if (!gone) {
      try { gone = !((await api('/v1/streams')).streams || []).some((s) => s.id === id); } catch { /* ended */ }
    }
    if (id === stream.id) finish(gone ? MESSAGES.removed : MESSAGES.ended);
  }

  /** The stream is over: announce once, stop reconnecting, keep the last picture and words.
   * ``refresh``: reload the picker (its state column; another stream to follow if removed). */
  function finish(message, { refresh = true } = {}) {
    if (stream.ended) return;
    stream.ended = true;
    stream.lost = false;
    closeEvents();
    flushBurst();
    if (!stream.quiet) {
      announce(el.polite, message);
      setConnection(message);
      addHistory(message, null);
    }
    if (refresh) loadStreams({ quiet: true });
  }

  // Replayed events (a page opened mid-stream gets the kept history at once) would make the
  // reader recite old captions: within a burst only the newest utterance is announced; every
  // one still goes into the history.
  function utter(text) {
    stream.burst = text;
    clearTimeout(stream.burstTimer);
    stream.burstTimer = setTimeout(flushBurst, BURST_MS);
  }

  function flushBurst() {
    clearTimeout(stream.burstTimer);
    const text = stream.burst;
    stream.burst = null;
    if (!text || stream.quiet) return;
    announce(el.polite, text);
    speak(text);
  }

  function handleEvent(event) {
    switch (event.event) {
      case 'spoken':
        if (event.answer) return; // an answer being said: shown and announced from the ask response
        if (event.notice) { // the camera went away or came back
          setConnection(event.text);
        } else {
          setCaption(event.text);
        }
        addHistory(event.text, event.wall);
        utter(event.text);
        break;
      case 'answer':
        if (stream.asked.has(questionKey(event.question))) return; // ours: the ask response shows it
        addHistory(`Someone asked “${event.question}”: ${event.text || event.answer}`, event.wall);
        break;
      case 'source_lost':
      case 'source_back':
        if (event.message) setConnection(event.message); // the 'spoken' notice is what is announced
        break;
      case 'summary': // the server says why: "removed" (DELETE), "end of source", "server stopping"
        if (event.ended_by === 'removed') finish(MESSAGES.removed);
        else endedOrRemoved();
        break;
      case 'stream_error':
        if (!stream.quiet) showError(`The stream stopped: ${event.message || 'unknown error'}`);
        finish(MESSAGES.ended);
        break;
      default: // frame, caption, skips: counts only. frame_issue ("too dark") comes as 'spoken' too.
    }
  }

  // --- the stream: the live picture ------------------------------------------------------------------
  // A loader Image fetches the next frame; the visible <img> switches only once it has loaded,
  // so a slow or missing frame never shows a broken picture.
  const picture = { timer: null, loading: false, shown: false };

  function refreshDelay() { return Number(el.refreshRate.value) || 1000; }

  function scheduleFrame(delay = refreshDelay()) {
    clearTimeout(picture.timer);
    picture.timer = setTimeout(loadFrame, delay);
  }

  function loadFrame() {
    const id = stream.id;
    if (!id || (stream.ended && picture.shown)) return; // an ended stream's last picture does not change
    if (el.pauseFrame.checked || document.hidden || picture.loading) {
      scheduleFrame();
      return;
    }
    picture.loading = true;
    const url = withToken(streamUrl(id, '/frame.jpg'), { t: Date.now() });
    const loader = new Image();
    loader.onload = () => {
      picture.loading = false;
      if (id === stream.id) {
        el.frame.src = url;
        el.frame.hidden = false;
        picture.shown = true;
        el.frameNote.textContent = '';
      }
      scheduleFrame();
    };
    loader.onerror = () => {
      picture.loading = false;
      if (id === stream.id && !picture.shown) el.frameNote.textContent = 'Waiting for the first picture.';
      if (!stream.ended) scheduleFrame(); // a removed stream has no pictures to wait for
    };
    loader.src = url;
  }

  function setupMotion() {
    const reduce = window.matchMedia('(prefers-reduced-motion: reduce)');
    const saved = store.get('edgevlm.refresh');
    // Less motion asked for: the picture changes every 5 seconds, not every second.
    el.refreshRate.value = saved || (reduce.matches ? '5000' : '1000');
    el.pauseFrame.checked = store.get('edgevlm.pause') === 'on';
    el.motionNote.textContent = reduce.matches
      ? 'Your system asks for less motion, so the live picture changes every 5 seconds at most. '
        + 'You can pause it; narration goes on.'
      : 'If the changing picture distracts you, pause it or refresh it less often; narration goes on.';
    el.pauseFrame.addEventListener('change', () => {
      store.set('edgevlm.pause', el.pauseFrame.checked ? 'on' : 'off');
      describeFrame();
      if (!el.pauseFrame.checked) scheduleFrame(0);
    });
    el.refreshRate.addEventListener('change', () => {
      store.set('edgevlm.refresh', el.refreshRate.value);
      scheduleFrame();
    });
  }

  // --- the stream picker ------------------------------------------------------------------------------
  function optionLabel(info) { return `${info.source} (${info.state})`; }

  function describeState(info) {
    if (!info) return '';
    const error = info.error ? ` Error: ${info.error}` : '';
    return `Stream ${info.id}: ${info.state}, ${info.frames} frames, ${info.captions} captions.${error}`;
  }

  /** Show the list; keep the selection if it is still there, else follow the first running stream. */
  function renderStreams(list) {
    streams = list;
    const ids = list.map((s) => s.id);
    const sameIds = ids.length === el.streamSelect.options.length
      && ids.every((id, i) => el.streamSelect.options[i].value === id);
    if (sameIds) { // only labels change: do not rebuild a control the reader may be on
      list.forEach((info, i) => { el.streamSelect.options[i].textContent = optionLabel(info); });
    } else {
      el.streamSelect.replaceChildren(...list.map((info) => new Option(optionLabel(info), info.id)));
    }
    const empty = list.length === 0;
    el.noStreams.hidden = !empty;
    el.streamSelect.disabled = empty;
    el.removeStream.disabled = empty;
    if (empty) {
      el.streamSelect.replaceChildren(new Option('No streams', ''));
      el.streamState.textContent = 'No streams.';
      if (stream.id) {
        finish(MESSAGES.removed, { refresh: false }); // says nothing if its end was already said
        closeEvents();
        Object.assign(stream, { id: null, info: null });
      } else {
        setConnection('Not connected: there is no stream.');
      }
      return;
    }
    const current = list.find((s) => s.id === stream.id);
    if (current) {
      stream.info = current;
      el.streamSelect.value = current.id;
      el.streamState.textContent = describeState(current);
      return;
    }
    if (stream.id && !stream.ended) finish(MESSAGES.removed, { refresh: false });
    // A live stream next, else the first; moving to another live stream is said.
    const live = list.find((s) => s.state === 'running' || s.state === 'starting');
    follow(live || list[0], { say: Boolean(live && stream.id) });
  }

  /** Follow ``info``'s stream: its events, picture and last caption. ``say``: announce it. */
  function follow(info, { say = false } = {}) {
    closeEvents();
    // The history runs on across streams; a line marks where another one's begins.
    if (stream.id && stream.id !== info.id) addHistory(`Now following ${info.source}.`, null);
    const over = info.state === 'ended' || info.state === 'failed';
    Object.assign(stream, { id: info.id, info, lastId: 0, ended: false, lost: false, reopenDelay: 1000, quiet: over });
    stream.burst = null;
    picture.shown = false;
    el.streamSelect.value = info.id;
    el.streamState.textContent = describeState(info);
    el.frame.hidden = true;
    el.frameNote.textContent = '';
    setCaption(info.last_caption || 'Nothing said yet.');
    setConnection(over ? `Showing ${info.source}, which has ${info.state}.` : `Connecting to ${info.source}.`);
    if (say) {
      announce(el.polite, over ? `Following ${info.source}, which has ${info.state}.` : `Following ${info.source}.`);
    }
    // The kept events are replayed: the history fills in and the newest caption is announced.
    // An ended stream replays them too, then closes (its summary says it has ended).
    openEvents();
    scheduleFrame(0);
  }

  /** GET /v1/streams into the picker. ``quiet``: the background poll, which shows no error
   * (an error region that repeats itself every few seconds helps nobody). */
  async function loadStreams({ quiet = false } = {}) {
    try {
      renderStreams((await api('/v1/streams')).streams || []);
    } catch (error) {
      if (!quiet) showError(error.message);
    }
  }

  async function addStream(event) {
    event.preventDefault();
    const source = el.source.value.trim();
    if (!source) {
      showError('Type a video source first: a file path, a camera number or an RTSP address.');
      el.source.focus();
      return;
    }
    el.addButton.disabled = true;
    try {
      const info = await api('/v1/streams', { method: 'POST', json: { source } });
      clearError();
      el.source.value = '';
      follow(info); // first: the picker then keeps it selected
      renderStreams([...streams.filter((s) => s.id !== info.id), info]);
      announce(el.polite, `Added and following ${info.source}.`);
    } catch (error) {
      showError(error.message);
    } finally {
      el.addButton.disabled = false;
    }
  }

  async function removeStream() {
    const id = el.streamSelect.value;
    if (!id) return;
    el.removeStream.disabled = true;
    stream.removing = id;
    try {
      await api(streamUrl(id, ''), { method: 'DELETE' });
      clearError();
      if (id === stream.id) finish(MESSAGES.removed, { refresh: false });
      await loadStreams();
    } catch (error) {
      showError(error.message);
    } finally {
      stream.removing = null;
      el.removeStream.disabled = streams.length === 0;
      // The button may have gone with the last stream: keep focus somewhere sensible.
      if (document.activeElement === document.body) el.streamSelect.focus();
    }
  }

  // --- questions and photos ------------------------------------------------------------------------
  /** Show an answer or a description: in the answer box (and ``extra``), assertively, spoken. */
  function showResult(text, detail, extra) {
    el.answer.textContent = text;
    el.answerDetail.textContent = detail;
    if (extra) extra.textContent = text;
    announce(el.assertive, text);
    speak(text, { interrupt: true });
  }

  /** A question as the server echoes it (spaces collapsed), case aside: to recognise our own. */
  function questionKey(question) {
    return String(question || '').split(/\s+/).filter(Boolean).join(' ').toLowerCase();
  }

  function answerDetail(question, result) {
    const sure = typeof result.probability === 'number' ? ` Confidence ${Math.round(result.probability * 100)}%.` : '';
    return `You asked “${question}”.${sure}`;
  }

  async function askStream(event) {
    event.preventDefault();
    const question = el.question.value.trim();
    if (!question) return;
    if (!stream.id) {
      showError('There is no stream to ask about. Add a stream, or ask about a photo under Describe a photo.');
      return;
    }
    el.askButton.disabled = true;
    el.answer.textContent = 'Asking…';
    el.answerDetail.textContent = `You asked “${question}”.`;
    const key = questionKey(question);
    stream.asked.add(key); // the answer also comes back as an event: not shown twice
    try {
      const result = await api(streamUrl(stream.id, '/ask'), { method: 'POST', json: { question } });
      clearError();
      showResult(result.answer, answerDetail(question, result));
      addHistory(`You asked “${question}”: ${result.answer}`, null);
    } catch (error) {
      el.answer.textContent = 'No answer.';
      showError(error.message);
    } finally {
      el.askButton.disabled = false;
      setTimeout(() => stream.asked.delete(key), 30000);
    }
  }

  async function sendPhoto(event) {
    event.preventDefault();
    // Enter in the question field, or the "Ask" button, asks; otherwise the photo is described.
    const asking = event.submitter === el.askPhoto || document.activeElement === el.photoQuestion;
    const file = el.photo.files[0];
    if (!file) {
      showError('Choose a photo first.');
      el.photo.focus();
      return;
    }
    const question = el.photoQuestion.value.trim();
    if (asking && !question) {
      showError('Type a question about the photo first.');
      el.photoQuestion.focus();
      return;
    }
    const form = new FormData();
    form.append('image', file);
    if (asking) form.append('question', question);
    el.describePhoto.disabled = el.askPhoto.disabled = true;
    el.photoResult.textContent = asking ? 'Asking…' : 'Describing…';
    try {
      if (asking) {
        const result = await api('/v1/ask', { method: 'POST', form });
        showResult(result.answer, `${answerDetail(question, result)} (about the photo ${file.name})`, el.photoResult);
        addHistory(`You asked about the photo ${file.name} “${question}”: ${result.answer}`, null);
      } else {
        const result = await api('/v1/caption', { method: 'POST', form });
        showResult(result.caption, `Description of the photo ${file.name}.`, el.photoResult);
        addHistory(`The photo ${file.name}: ${result.caption}`, null);
      }
      clearError();
    } catch (error) {
      el.photoResult.textContent = '';
      showError(error.message);
    } finally {
      el.describePhoto.disabled = el.askPhoto.disabled = false;
    }
  }

  // --- start --------------------------------------------------------------------------------------
  function start() {
    setupSpeech();
    setupMotion();
    enterToggles(el.speak);
    enterToggles(el.pauseFrame);
    el.askForm.addEventListener('submit', askStream);
    el.photoForm.addEventListener('submit', sendPhoto);
    el.addForm.addEventListener('submit', addStream);
    el.refreshStreams.addEventListener('click', async () => {
      await loadStreams();
      announce(el.polite, `${streams.length} ${streams.length === 1 ? 'stream' : 'streams'}.`);
    });
    el.removeStream.addEventListener('click', removeStream);
    el.streamSelect.addEventListener('change', () => {
      const info = streams.find((s) => s.id === el.streamSelect.value);
      if (info && info.id !== stream.id) follow(info, { say: true });
    });
    // The skip link moves focus, not just the scroll position (main has tabindex="-1").
    document.querySelector('.skip-link').addEventListener('click', () => $('main').focus());
    // Back in view: a fresh picture at once rather than after the next tick.
    document.addEventListener('visibilitychange', () => { if (!document.hidden) scheduleFrame(0); });
    loadStreams();
    setInterval(() => { if (!document.hidden) loadStreams({ quiet: true }); }, STREAM_POLL_MS);
  }

  start();
})();
