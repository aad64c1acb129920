/* B.A.I. website chat. Embed with:
   <script src="https://EDGE/v1/chat/widget.js" data-widget-key="wk_..." async></script> */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-widget-key]");
  var key = script && script.getAttribute("data-widget-key");
  if (!key) return;
  var edge = new URL(script.src, location.href).origin;
  var storeKey = "bai-chat:" + key;
  var state = {};
  try { state = JSON.parse(sessionStorage.getItem(storeKey) || "{}") || {}; } catch (e) { state = {}; }

  function save() {
    try { sessionStorage.setItem(storeKey, JSON.stringify(state)); } catch (e) { /* storage off */ }
  }

  function post(path, body, token) {
    var headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(edge + path, {
      method: "POST", headers: headers, body: JSON.stringify(body), credentials: "omit"
    }).then(function (response) {
      if (response.ok) return response.json();
      var error = new Error("HTTP " + response.status);
      error.status = response.status;
      throw error;
    });
  }

  function token() {
    if (state.token && state.expires > Date.now() + 60000) return Promise.resolve(state.token);
    var body = { widget_key: key };
    if (state.visitor) body.visitor_id = state.visitor;
    return post("/v1/chat/visitor-token", body).then(function (answer) {
      state.token = answer.token;
      state.visitor = answer.visitor_id;
      state.expires = Date.now() + answer.expires_in * 1000;
      save();
      return answer.token;
    });
  }

  function ask(path, body) {  // with the visitor token; once more with a fresh one on 401
    return token().then(function (t) { return post(path, body, t); }).catch(function (error) {
      if (error.status !== 401) throw error;
      state.token = null;
      return token().then(function (t) { return post(path, body, t); });
    });
  }

  function el(tag, css) {
    var node = document.createElement(tag);
    node.style.cssText = css;
    return node;
  }

  function start() {
    var root = el("div", "position:fixed;right:20px;bottom:20px;z-index:2147483000;" +
      "font:14px/1.4 system-ui,sans-serif;color:#222");
    var panel = el("div", "display:none;flex-direction:column;width:320px;height:420px;" +
      "margin-bottom:8px;background:#fff;border:1px solid #ddd;border-radius:12px;" +
      "box-shadow:0 8px 24px rgba(0,0,0,.15);overflow:hidden");
    var log = el("div", "flex:1;overflow-y:auto;padding:12px");
    var form = el("form", "display:flex;border-top:1px solid #eee;margin:0");
    var input = el("input", "flex:1;border:0;padding:12px;font:inherit;outline:none");
    var toggle = el("button", "float:right;padding:10px 16px;border:0;border-radius:20px;" +
      "background:#222;color:#fff;font:inherit;cursor:pointer");
    input.maxLength = 2000;
    input.placeholder = "Write a message…";
    input.setAttribute("aria-label", "Message");
    toggle.type = "button";
    toggle.textContent = "Chat";
    form.appendChild(input);
    panel.appendChild(log);
    panel.appendChild(form);
    root.appendChild(panel);
    root.appendChild(toggle);
    document.body.appendChild(root);

    function show(who, text, keep) {  // textContent only: replies and input are never HTML
      var line = el("div", "margin:6px 0;white-space:pre-wrap;" +
        (who === "me" ? "text-align:right;color:#0b57d0" : ""));
      line.textContent = String(text);
      log.appendChild(line);
      log.scrollTop = log.scrollHeight;
      if (keep) { state.log = (state.log || []).concat([[who, String(text)]]).slice(-50); save(); }
    }
    (state.log || []).forEach(function (entry) { show(entry[0], entry[1], false); });

    function conversation() {
      if (state.conversation) return Promise.resolve(state.conversation);
      return ask("/v1/creator/chat/conversations", {}).then(function (answer) {
        state.conversation = answer.id;
        save();
        if (answer.greeting) show("bot", answer.greeting, true);
        return answer.id;
      });
    }

    function failed(error) {
      if (error && error.status === 404) { state.conversation = null; save(); }  // ended
      show("bot", "Sorry, the chat is not available right now.", false);
    }

    toggle.addEventListener("click", function () {
      var open = panel.style.display === "none";
      panel.style.display = open ? "flex" : "none";
      if (open) { input.focus(); conversation().catch(failed); }
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      input.value = "";
      show("me", text, true);
      conversation().then(function (id) {
        return ask("/v1/creator/chat/" + encodeURIComponent(id) + "/messages", { text: text });
      }).then(function (answer) { show("bot", answer.reply, true); }).catch(failed);
    });
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
