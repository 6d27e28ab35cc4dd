/* failcat's pages: small conveniences only; every page works without this script.
 * - a <select data-autosubmit> submits its form once a choice is made (sort, interval);
 * - Space on a facet value (a link shown as a checkbox) toggles it, as a click does;
 * - "/" focuses the query box;
 * - a case page's similar cases are fetched after the page is shown (a search of its own,
 *   slower than the rest of the page); without the script a link opens them.
 */
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    // Chromium and Firefox (off macOS) fire change at each arrow key or letter on a closed
    // list: that is a keyboard user looking through the options, not a choice. A change by
    // keys submits when it is committed (Enter, or leaving the list); one by the pointer
    // (the open list) at once. The form's own button does the same without this script.
    var initial = select.value;
    var keyed = false;
    function submit() {
      if (select.form && select.value !== initial) {
        initial = select.value;  // blur after Enter must not submit a second time
        select.form.submit();
      }
    }
    select.addEventListener("keydown", function (event) {
      keyed = true;
      // After the key's own handling, which may commit an option of the open list.
      if (event.key === "Enter") setTimeout(submit, 0);
    });
    select.addEventListener("keyup", function () { keyed = false; });
    select.addEventListener("mousedown", function () { keyed = false; });
    select.addEventListener("change", function () { if (!keyed) submit(); });
    select.addEventListener("blur", submit);
  });
  document.addEventListener("keydown", function (event) {
    // A link does nothing on Space (the page scrolls); a checkbox toggles.
    var target = event.target;
    if (event.key === " " && target.matches && target.matches('a[role="checkbox"]')) {
      event.preventDefault();
      if (!event.repeat) target.click();
    }
  });
  var slot = document.getElementById("similar-slot");
  if (slot && window.fetch) {
    fetch(slot.getAttribute("data-src"), {
      headers: { "X-Fragment": "1" },
      credentials: "same-origin",
    }).then(function (resp) {
      // The fragment is server-rendered and escaped like every page.
      if (resp.ok) return resp.text().then(function (html) { slot.innerHTML = html; });
    }).catch(function () { /* the link stays */ });
  }
  document.addEventListener("keydown", function (event) {
    var box = document.getElementById("q");
    if (event.key === "/" && box && document.activeElement !== box &&
        !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)) {
      event.preventDefault();
      box.focus();
    }
  });
})();
