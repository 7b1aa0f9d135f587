// Progressive enhancement for the clew inspector. Every page works without it.
(function () {
  "use strict";

  // Answer and state-edit fields: check the JSON as it is typed; the server checks again.
  function checkJson(area) {
    var form = area.form, out = form.querySelector(".json-error"), text = area.value.trim(), msg = "";
    if (text) {
      try {
        var v = JSON.parse(text);
        if (area.hasAttribute("data-json-object") && (v === null || typeof v !== "object" || Array.isArray(v))) {
          msg = "a JSON object of field names to new values";
        }
      } catch (e) { msg = "not valid JSON: " + e.message; }
    }
    area.classList.toggle("invalid", !!msg);
    if (out) { out.textContent = msg; }
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = !!msg; }
  }
  document.querySelectorAll("textarea[data-json]").forEach(function (area) {
    area.addEventListener("input", function () { checkJson(area); });
  });

  // "more items" links in a state tree: load the next page in place.
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[data-fragment]");
    if (!a) { return; }
    ev.preventDefault();
    fetch(a.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var list = doc.querySelector("#state details.tree > ol");
        var target = a.parentNode.querySelector(":scope > ol");
        if (list && target) {
          Array.prototype.slice.call(list.children).forEach(function (li) { target.appendChild(document.importNode(li, true)); });
          var next = doc.querySelector("#state details.tree > a.more[data-fragment]");
          if (next) { a.href = next.getAttribute("href"); a.textContent = next.textContent; } else { a.remove(); }
        } else { window.location = a.href; }
      })
      .catch(function () { window.location = a.href; });
  });

  // A run with a running branch: reload when it moves on (unless a form is being filled in).
  var title = document.getElementById("run-title");
  if (title && title.getAttribute("data-live") === "1") {
    setInterval(function () {
      var busy = Array.prototype.some.call(document.querySelectorAll("form.action input:not([type=hidden]), form.action textarea"),
        function (el) { return el === document.activeElement || (el.type !== "checkbox" && el.value); });
      if (busy || document.hidden) { return; }
      fetch(title.getAttribute("data-api"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (body && String(body.run.updated_at) !== title.getAttribute("data-updated")) { location.reload(); }
        })
        .catch(function () {});
    }, 3000);
  }

  // Runs list: refresh the first page from /api/v1/runs while "live" is on.
  var table = document.getElementById("runs"), live = document.getElementById("live");
  if (table && live && !/[?&]cursor=/.test(location.search)) {
    var cell = function (tr, text, cls) {
      var td = document.createElement("td");
      if (cls) { var span = document.createElement("span"); span.className = cls; span.textContent = text; td.appendChild(span); }
      else { td.textContent = text; }
      tr.appendChild(td); return td;
    };
    var when = function (ts) { return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19); };
    var refresh = function () {
      if (!live.checked || document.hidden) { return; }
      fetch(table.getAttribute("data-api"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (!body) { return; }
          var tbody = document.createElement("tbody");
          body.items.forEach(function (r) {
            var tr = document.createElement("tr"), td = document.createElement("td"), a = document.createElement("a");
            a.href = "/runs/" + encodeURIComponent(r.run_id); a.textContent = r.run_id; td.appendChild(a); tr.appendChild(td);
            cell(tr, r.agent); cell(tr, r.status, "status s-" + r.status);
            cell(tr, Object.keys(r.labels).map(function (k) { return k + "=" + r.labels[k]; }).join(" "));
            cell(tr, when(r.created_at)); cell(tr, when(r.updated_at));
            tbody.appendChild(tr);
          });
          if (body.items.length) { table.replaceChild(tbody, table.tBodies[0]); }
          table.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () {});
    };
    setInterval(refresh, 3000);
  }
})();
