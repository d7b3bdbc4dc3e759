// Home page: once JavaScript is known to run, say which protection this browser will get.
// The sentence is translated in the page (data-on); without JavaScript the page already
// says what happens with JavaScript off.
const note = document.getElementById("js-mode");
if (note?.dataset.on) note.textContent = note.dataset.on;
