// "Delete these replies" with JavaScript on (the mailbox opened in the browser): the same
// confirmation as the plain page, then POST /api/mailbox/delete-replies with the mailbox
// token the browser derived itself. The codename never leaves the browser.

/** The box under the replies; `msg(name)` gives the page's translated sentences. */
export function deleteRepliesBox(tokenHex, msg, onDeleted) {
  const box = document.createElement("form");
  box.id = "delete-replies-form";
  const title = document.createElement("h2");
  title.id = "delete-replies";
  title.textContent = msg("msgDeleteTitle");
  const note = document.createElement("p");
  note.textContent = msg("msgDeleteNote");
  const label = document.createElement("label");
  label.className = "choice confirm";
  const tick = document.createElement("input");
  tick.type = "checkbox";
  tick.id = "confirm-delete";
  tick.required = true;
  label.append(tick, " ", msg("msgDeleteConfirm"));
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = msg("msgDeleteButton");
  const status = document.createElement("p");
  status.setAttribute("role", "status");
  box.append(title, note, label, button, status);
  box.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!tick.checked) {
      status.textContent = msg("msgDeleteRefused");
      return;
    }
    button.disabled = true;
    try {
      const response = await fetch("/api/mailbox/delete-replies", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token: tokenHex, confirm: true }),
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
      if (!response.ok) throw new Error("delete refused");
      const done = document.createElement("p");
      done.id = "replies-deleted";
      done.textContent = msg("msgDeleteDone");
      box.replaceChildren(title, done);
      onDeleted();
    } catch {
      status.textContent = msg("msgFailed");
      button.disabled = false;
    }
  });
  return box;
}
