/* Yuchi sidebar: the entry's JS-SDK handshake and the page's actions (no library). */
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) throw new Error(data.error || "操作失败（" + r.status + "）");
        return data;
      });
    });
  }

  function toast(text) {
    var el = document.getElementById("msg");
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
    setTimeout(function () { el.hidden = true; }, 4000);
  }

  function randomKey() {
    var a = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // --- the entry: which customer is this chat with? ----------------------------------------
  function refuse(text) {
    var box = document.getElementById("refusal");
    if (!box) return;
    document.getElementById("loading").hidden = true;
    if (text) document.getElementById("refusal-text").textContent = text;
    box.hidden = false;
  }

  function invoke(name) {
    return new Promise(function (resolve) { window.wx.invoke(name, {}, resolve); });
  }

  function ok(res, name) {
    return res && (res.err_msg || res.errMsg || "") === name + ":ok";
  }

  function entry(el) {
    var d = el.dataset;
    if (!d.corpid) return refuse();
    var timer = setTimeout(function () { refuse("没有连接到企业微信：请在企业微信的客户聊天中打开侧边栏。"); }, 8000);
    var fail = function (text) { clearTimeout(timer); refuse(text); };
    if (!window.wx) return fail("请在企业微信中打开：这里无法识别当前聊天的客户。");
    var apis = ["getContext", "getCurExternalContact", "sendChatMessage"];
    window.wx.config({ beta: true, debug: false, appId: d.corpid, timestamp: +d.configTimestamp,
      nonceStr: d.configNonce, signature: d.configSignature, jsApiList: apis });
    window.wx.error(function () { fail("企业微信拒绝了页面的 JS-SDK 签名，暂时无法识别当前聊天的客户。"); });
    window.wx.ready(function () {
      window.wx.agentConfig({ corpid: d.corpid, agentid: d.agentid, timestamp: +d.agentTimestamp,
        nonceStr: d.agentNonce, signature: d.agentSignature, jsApiList: apis,
        success: function () { whoIsThis(fail, timer); },
        fail: function () { fail("企业微信拒绝了应用的 JS-SDK 签名，暂时无法识别当前聊天的客户。"); } });
    });
  }

  function whoIsThis(fail, timer) {
    invoke("getContext").then(function (ctx) {
      if (!ok(ctx, "getContext")) throw new Error("无法读取侧边栏的打开位置。");
      if (ctx.entry !== "single_chat_tools" && ctx.entry !== "contact_profile")
        throw new Error("请在与客户的单聊中打开侧边栏。");
      return invoke("getCurExternalContact");
    }).then(function (res) {
      if (!ok(res, "getCurExternalContact")) throw new Error("这不是与外部客户的聊天，无法显示客户资料。");
      return api("POST", "/sidebar/api/open", { external_userid: res.userId });
    }).then(function (data) {
      clearTimeout(timer);
      window.location.replace(data.url);
    }).catch(function (err) { fail(err.message); });
  }

  // --- the page's actions: [data-api] buttons and forms -----------------------------------
  function send(el, body) {
    return api(el.dataset.method || "POST", el.dataset.api, body).then(function () {
      window.location.reload();
    }).catch(function (err) { toast(err.message); });
  }

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("button[data-api]");
    if (!el) return;
    ev.preventDefault();
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    var body = el.dataset.body ? JSON.parse(el.dataset.body) : {};
    if (el.dataset.prompt) {
      var answer = window.prompt(el.dataset.prompt, "");
      if (answer === null) return;
      if (el.dataset.required && !answer.trim()) return toast(el.dataset.prompt + "不能为空");
      body[el.dataset.field] = answer.trim();
    }
    send(el, el.dataset.method === "DELETE" ? undefined : body);
  });

  document.addEventListener("submit", function (ev) {
    var form = ev.target.closest("form[data-api]");
    if (!form) return;
    ev.preventDefault();
    var body = {};
    Array.prototype.forEach.call(form.elements, function (f) { if (f.name) body[f.name] = f.value.trim(); });
    if (form.dataset.key) body.key = form.dataset.sent || (form.dataset.sent = randomKey());
    send(form, body);
  });

  var el = document.getElementById("entry");
  if (el) entry(el);
})();
