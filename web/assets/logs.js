// Live logs: follow the app's log over Server-Sent Events.
(function () {
  "use strict";
  var list = document.getElementById("log");
  var state = document.getElementById("log-state");
  var filter = document.getElementById("log-type");
  if (!list || !window.EventSource) { if (state) state.textContent = "Live logs need a browser with EventSource."; return; }
  if (filter) filter.addEventListener("change", function () { filter.form.submit(); });
  var max = 1000, opened = false;
  var es = new EventSource(list.getAttribute("data-src"));
  es.onopen = function () {
    if (opened) list.textContent = ""; // a reconnect sends the recent lines again
    opened = true;
    state.textContent = "Following: new lines appear as they are written.";
  };
  es.onmessage = function (e) {
    var l;
    try { l = JSON.parse(e.data); } catch (err) { return; }
    var follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    var li = document.createElement("li");
    var t = document.createElement("time");
    t.dateTime = l.time; t.textContent = (l.time || "").replace("T", " ").slice(0, 19) + " ";
    var p = document.createElement("span");
    p.className = "proc"; p.textContent = l.process + ": ";
    li.appendChild(t); li.appendChild(p); li.appendChild(document.createTextNode(l.text));
    list.appendChild(li);
    while (list.childNodes.length > max) list.removeChild(list.firstChild);
    if (follow) list.scrollTop = list.scrollHeight;
  };
  es.addEventListener("failure", function (e) {
    es.close();
    state.textContent = "The log stopped: " + JSON.parse(e.data);
  });
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED) state.textContent = "The log stream closed: reload the page to follow it again.";
    else state.textContent = "Reconnecting…";
  };
})();
