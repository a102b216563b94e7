// naraft console: confirm before destructive forms, and live refresh of the cluster table.
// Written for this console; no library. Works without it (forms post, pages reload).
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

function cell(row, text, className) {
  var td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

function shown(value) {
  return value === null || value === undefined ? "\u2013" : String(value);
}

function renderMembers(table, members) {
  var body = document.createElement("tbody");
  members.forEach(function (m) {
    var row = document.createElement("tr");
    row.setAttribute("data-member", m.id);
    row.className = "role-" + m.role;
    cell(row, m.id + (m.self ? " (this node)" : ""));
    cell(row, m.role, "role");
    cell(row, m.kind, "kind");
    cell(row, shown(m.term));
    cell(row, m.leader || "\u2013");
    cell(row, shown(m.commitIndex));
    cell(row, shown(m.appliedIndex));
    cell(row, shown(m.lastLogIndex));
    cell(row, shown(m.lag));
    cell(row, m.lastContact === null ? "never" : m.lastContact.toFixed(1) + " s ago");
    cell(row, m.diskFull ? "disk full"
      : m.catchingUp ? "catching up (" + m.catchingUp + ")"
      : (m.reachable ? "ok" : "unreachable"));
    body.appendChild(row);
  });
  table.replaceChild(body, table.tBodies[0]);
}

function refresh(table) {
  var status = document.getElementById("refreshed");
  fetch(table.getAttribute("data-refresh"), { credentials: "same-origin", cache: "no-store" })
    .then(function (answer) {
      if (!answer.ok) throw new Error("status " + answer.status);
      return answer.json();
    })
    .then(function (data) {
      renderMembers(table, data.members);
      if (status) status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
    })
    .catch(function (error) {
      if (status) status.textContent = "Could not refresh: " + error.message + ".";
    })
    .finally(function () {
      window.setTimeout(function () { refresh(table); }, 2000);
    });
}

document.addEventListener("DOMContentLoaded", function () {
  var table = document.querySelector("table[data-refresh]");
  if (table) window.setTimeout(function () { refresh(table); }, 2000);
});
