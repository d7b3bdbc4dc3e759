/* Guwah witness-site bundle. Built from app/web/js with tests/js/build.mjs;
   dependencies pinned in package-lock.json (age-encryption, @noble, @scure: MIT).
   Rebuild and compare: pytest tests/test_bundle_reproducible.py */

// app/web/js/landing.js
var note = document.getElementById("js-mode");
if (note?.dataset.on) note.textContent = note.dataset.on;
