/* The review desk's keyboard: a key clicks the element whose data-moderation-key names it
   (a: approve, r: reject, s: rescan, n: next, p: previous, o: open the photo, u: undo), in
   either case (Caps Lock). On the open photo, z toggles the zoom, + zooms in, - out. Keys typed into a field stay the field's. A decision that needs a reason (reject)
   first moves to the reason's list; Enter there, or Ctrl+Enter in the details, decides.
   Esc leaves a field, and closes the photo. The undo bar removes itself when its time is up. Loaded by ModerationAdminMixin (class Media). */
(function () {
  "use strict";

  var pending = null; // the button a reason is being picked for
  // The open photo's zoom keys: whether it is shown pixel for pixel afterwards.
  var ZOOM = {
    z: function (zoomed) {
      return !zoomed;
    },
    "+": function () {
      return true;
    },
    "=": function () {
      return true; // + without Shift on most keyboards
    },
    "-": function () {
      return false;
    },
  };

  function isField(element) {
    return element && (element.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName));
  }

  function reasonGiven(form) {
    return Array.prototype.some.call(form.querySelectorAll("select, textarea"), function (field) {
      return field.value.trim() !== "";
    });
  }

  function press(element) {
    if (element.hasAttribute("data-moderation-needs-reason") && !reasonGiven(element.form)) {
      pending = element;
      element.form.classList.add("moderation-choosing");
      element.form.querySelector("select, textarea").focus();
      return;
    }
    element.click();
  }

  function openPhoto(event) {
    var dialog = document.getElementById("moderation-photo-dialog");
    if (!dialog || !dialog.showModal) return;
    event.preventDefault();
    dialog.showModal();
  }

  // The undo bar goes when the server stops honouring it (UNDO_SECONDS after the decision).
  function expireUndo() {
    var bar = document.getElementById("moderation-undo-form");
    if (!bar) return;
    window.setTimeout(function () {
      bar.remove();
    }, Math.max(0, Number(bar.getAttribute("data-moderation-until")) - Date.now()));
  }

  document.addEventListener("DOMContentLoaded", function () {
    expireUndo();
    var link = document.getElementById("moderation-photo-link");
    if (link) link.addEventListener("click", openPhoto);
    var dialog = document.getElementById("moderation-photo-dialog");
    if (dialog) {
      dialog.addEventListener("click", function (event) {
        if (event.target.tagName === "IMG") dialog.classList.toggle("zoomed");
        else dialog.close();
      });
    }
  });

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.altKey || event.metaKey) return;
    if (event.key === "Escape" && isField(target)) {
      pending = null;
      target.blur();
      return;
    }
    if (event.key === "Enter" && pending && target.form === pending.form) {
      if (target.tagName === "SELECT" || event.ctrlKey) {
        event.preventDefault();
        if (reasonGiven(pending.form)) pending.click();
      }
      return;
    }
    if (event.ctrlKey || isField(target)) return;
    // Caps Lock or Shift: the same shortcut.
    var key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    var photo = document.querySelector("#moderation-photo-dialog[open]");
    if (photo) {
      if (key in ZOOM) {
        event.preventDefault();
        photo.classList.toggle("zoomed", ZOOM[key](photo.classList.contains("zoomed")));
      }
      return;
    }
    if (document.querySelector("dialog[open]")) return;
    // On a change list, n opens the first object of the list.
    var element =
      document.querySelector('[data-moderation-key="' + key + '"]') ||
      (key === "n" && document.querySelector("#result_list tbody th a"));
    if (!element) return;
    event.preventDefault();
    press(element);
  });
})();
