/* failcat's pages: small conveniences only; every page works without this script.
 * - a <select data-autosubmit> submits its form when changed (sort, interval);
 * - "/" focuses the query box;
 * - a case page's similar cases are fetched after the page is shown (a search of its own,
 *   slower than the rest of the page); without the script a link opens them.
 */
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) select.form.submit();
    });
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
