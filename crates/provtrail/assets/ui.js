// provtrail web UI: progressive enhancement only; every page works without this file.
// - events page: new events matching the current filters appear at the top (polling a fragment);
// - filter playground: the result follows the filter as it is typed;
// - failures chart: on a screen too narrow for it, it starts scrolled to its newest end.
(function () {
  'use strict';

  // Rows kept on the events page while it stays open; older ones are dropped from the bottom.
  var MAX_ROWS = 500;
  var POLL_MS = 2000;

  function toSignIn() {
    location.href = '/sign-in?next=' + encodeURIComponent(location.pathname + location.search);
  }

  function liveEvents() {
    var body = document.getElementById('event-rows');
    if (!body || !body.dataset.liveUrl) return;
    var status = document.getElementById('live-status');
    var base = body.dataset.liveUrl;
    var after = body.dataset.after;
    var busy = false;
    var stopped = false;
    var added = 0;
    var paused = false;

    function say(text) { if (status) status.textContent = text; }

    function url() {
      return base + (base.indexOf('?') < 0 ? '?' : '&') +
        'after=' + encodeURIComponent(after);
    }

    function poll() {
      if (busy || stopped || document.hidden) return;
      busy = true;
      fetch(url(), { credentials: 'same-origin', headers: { Accept: 'text/html' } })
        .then(function (response) {
          if (response.status === 401) { stopped = true; toSignIn(); return null; }
          if (!response.ok) throw new Error('HTTP ' + response.status);
          // Answered again: whatever said the updates had paused is over.
          if (paused) {
            paused = false;
            say(added ? added + ' new event' + (added === 1 ? '' : 's') + ' since this page was loaded.'
              : 'Live: new events appear at the top.');
          }
          var more = response.headers.get('x-provtrail-more') === '1';
          return response.text().then(function (html) { return { html: html, more: more }; });
        })
        .then(function (answer) {
          if (!answer) return;
          var template = document.createElement('template');
          template.innerHTML = answer.html;
          var rows = template.content.querySelectorAll('tr');
          if (rows.length) {
            after = rows[0].dataset.id;
            var fresh = document.createDocumentFragment();
            rows.forEach(function (row) { row.classList.add('fresh'); fresh.appendChild(row); });
            body.insertBefore(fresh, body.firstChild);
            while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
            var empty = document.querySelector('p.empty');
            if (empty) empty.remove();
            added += rows.length;
            say(added + ' new event' + (added === 1 ? '' : 's') + ' since this page was loaded.');
          }
          if (answer.more) {
            stopped = true;
            say('Many new events arrived at once. Reload the page to see them all.');
          }
        })
        .catch(function (error) {
          paused = true;
          say(/^HTTP /.test(error.message)
            ? 'Live updates paused: the server answered ' + error.message + '. Retrying…'
            : 'Live updates paused: the server did not answer. Retrying…');
        })
        .then(function () { busy = false; });
    }

    say('Live: new events appear at the top.');
    setInterval(poll, POLL_MS);
    document.addEventListener('visibilitychange', poll);
  }

  function playground() {
    var form = document.getElementById('playground');
    var area = document.getElementById('filter');
    var out = document.getElementById('playground-result');
    if (!form || !area || !out) return;
    var range = form.querySelector('select[name="range"]');
    var help = document.getElementById('playground-help');
    if (help) help.textContent = 'The result follows the filter as you type.';
    var timer = null;
    var controller = null;
    var sequence = 0;
    // Longest query sent (the server reads addresses of up to 64 KiB), and longest kept in the
    // address bar for a reload.
    var MAX_QUERY = 60000;
    var MAX_ADDRESS = 32000;

    function run() {
      var params = new URLSearchParams();
      params.set('filter', area.value);
      if (range) params.set('range', range.value);
      var query = params.toString();
      if (controller) controller.abort();
      // An address past what the server reads (64 KiB) cannot carry the filter: said here,
      // rather than sent and answered 414 (a filter of 6,000 characters of another script
      // takes that much, encoded).
      if (query.length > MAX_QUERY) {
        ++sequence;
        out.removeAttribute('aria-busy');
        out.innerHTML = alertOf('This filter is too long to try here: encoded in an address it ' +
          'takes ' + query.length + ' characters, and at most ' + MAX_QUERY + ' go. Shorten it.');
        return;
      }
      controller = new AbortController();
      var mine = ++sequence;
      out.setAttribute('aria-busy', 'true');
      fetch(area.dataset.fragment + '?' + query, {
        credentials: 'same-origin',
        signal: controller.signal,
        headers: { Accept: 'text/html' }
      })
        .then(function (response) {
          if (response.status === 401) { toSignIn(); return null; }
          if (!response.ok) return refusal(response);
          return response.text();
        })
        .then(function (html) {
          if (html === null || mine !== sequence) return;
          // Server-rendered and escaped there; the page's CSP forbids inline script anyway.
          out.innerHTML = html;
          out.removeAttribute('aria-busy');
          // Kept in the address, so that a reload shows the same (a refusal too), while the
          // address stays one a reload can send.
          if (query.length <= MAX_ADDRESS) history.replaceState(null, '', '/playground?' + query);
        })
        .catch(function (error) {
          if (error.name === 'AbortError') return;
          out.removeAttribute('aria-busy');
          out.textContent = 'The server could not be reached.';
        });
    }

    // The reason an error page gives (its first paragraph), as an alert in place of the result.
    function refusal(response) {
      return response.text().then(function (text) {
        var page = new DOMParser().parseFromString(text, 'text/html');
        var reason = page.querySelector('main h1 + p');
        return alertOf((reason && reason.textContent.trim()) ||
          'The server answered HTTP ' + response.status + '.');
      });
    }

    // A refusal's alert, as markup for the result's place.
    function alertOf(text) {
      var alert = document.createElement('p');
      alert.className = 'alert';
      alert.setAttribute('role', 'alert');
      alert.dataset.state = 'refused';
      alert.textContent = text;
      return alert.outerHTML;
    }

    function soon() {
      clearTimeout(timer);
      timer = setTimeout(run, 250);
    }

    area.addEventListener('input', soon);
    if (range) range.addEventListener('change', run);
    document.querySelectorAll('a[data-filter]').forEach(function (link) {
      link.addEventListener('click', function (event) {
        event.preventDefault();
        area.value = link.dataset.filter;
        area.focus();
        run();
      });
    });
  }

  // A chart wider than the screen scrolls sideways; its newest data is at the right end.
  function scrollToEnd() {
    document.querySelectorAll('[data-scroll-to-end]').forEach(function (box) {
      box.scrollLeft = box.scrollWidth;
    });
  }

  function start() {
    liveEvents();
    playground();
    scrollToEnd();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
