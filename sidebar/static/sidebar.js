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

  // wx.config + wx.agentConfig with a page's signatures ({corpid, agentid, config, agent})
  function configure(s) {
    return new Promise(function (resolve, reject) {
      var apis = ["getContext", "getCurExternalContact", "sendChatMessage"];
      window.wx.config({ beta: true, debug: false, appId: s.corpid, timestamp: +s.config.timestamp,
        nonceStr: s.config.nonceStr, signature: s.config.signature, jsApiList: apis });
      window.wx.error(function () { reject(new Error("企业微信拒绝了页面的 JS-SDK 签名，暂时无法识别当前聊天的客户。")); });
      window.wx.ready(function () {
        window.wx.agentConfig({ corpid: s.corpid, agentid: s.agentid, timestamp: +s.agent.timestamp,
          nonceStr: s.agent.nonceStr, signature: s.agent.signature, jsApiList: apis,
          success: function () { resolve(); },
          fail: function () { reject(new Error("企业微信拒绝了应用的 JS-SDK 签名，暂时无法识别当前聊天的客户。")); } });
      });
    });
  }

  function entry(el) {
    var d = el.dataset;
    if (!d.corpid) return refuse();
    var timer = setTimeout(function () { refuse("没有连接到企业微信：请在企业微信的客户聊天中打开侧边栏。"); }, 8000);
    var fail = function (text) { clearTimeout(timer); refuse(text); };
    if (!window.wx) return fail("请在企业微信中打开：这里无法识别当前聊天的客户。");
    configure({ corpid: d.corpid, agentid: d.agentid,
      config: { timestamp: d.configTimestamp, nonceStr: d.configNonce, signature: d.configSignature },
      agent: { timestamp: d.agentTimestamp, nonceStr: d.agentNonce, signature: d.agentSignature } })
      .then(function () { whoIsThis(fail, timer); }, function (err) { fail(err.message); });
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
      if (!el.dataset.done) return window.location.reload();
      toast(el.dataset.done);  // the page stays as it is (e.g. a link sent to the rep's WeCom)
    }).catch(function (err) { toast(err.message); });
  }

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("button[data-api]");
    if (!el) return;
    ev.preventDefault();
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    var body = el.dataset.body ? JSON.parse(el.dataset.body) : {};
    if (el.dataset.inputs) {
      var empty = el.dataset.inputs.split(",").some(function (pair) {
        var kv = pair.split(":");
        body[kv[0]] = kv[1].split("+").map(function (id) {
          return document.getElementById(id).value.trim();
        }).join("T");
        return !body[kv[0]];
      });
      if (empty) return toast("请填写完整后再提交");
    }
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

  // --- "copy my link": the clipboard where the browser allows it, else the text selected ------
  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("button[data-copy]");
    if (!el) return;
    var input = document.getElementById(el.dataset.copy);
    input.select();
    var done = function () { toast("链接已复制，去粘贴给客户吧"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () { toast("请长按链接复制"); });
    } else {
      try { document.execCommand("copy"); done(); } catch (e) { toast("请长按链接复制"); }
    }
  });

  // --- returning a lead: the dialog with the reasons ------------------------------------------
  document.addEventListener("click", function (ev) {
    var open = ev.target.closest("[data-open]"), close = ev.target.closest("[data-close]");
    if (open) document.getElementById(open.dataset.open).hidden = false;
    if (close) document.getElementById(close.dataset.close).hidden = true;
  });

  function returnForm(form) {
    var note = form.elements.note, err = document.getElementById("return-error");
    form.addEventListener("change", function () {
      err.hidden = true;
      var picked = form.querySelector("input[name=reason]:checked");
      var needed = !!(picked && picked.dataset.note);
      note.required = needed;
      note.placeholder = needed ? "请说明原因（必填）" : "补充说明（选填）";
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      ev.stopPropagation();
      var picked = form.querySelector("input[name=reason]:checked");
      var say = function (text) { err.textContent = text; err.hidden = false; };
      if (!picked) return say("请选择退回原因");
      if (picked.dataset.note && !note.value.trim()) return say("这个原因需要填写说明");
      api("POST", form.dataset.url, { reason: +picked.value, note: note.value.trim() }).then(function (data) {
        document.getElementById("return-dialog").hidden = true;
        var box = document.getElementById("lead");
        box.textContent = "";
        var p = document.createElement("p");
        p.id = "lead-status";
        p.textContent = data.message;
        box.appendChild(p);
        toast(data.message);
      }).catch(function (e) { say(e.message); });
    }, true);
  }

  // --- quick replies (话术库): search, tap, sendChatMessage -------------------------------------
  var sdk = null;

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      if (window.wx) return resolve();
      var tag = document.createElement("script");
      tag.src = src;
      tag.onload = resolve;
      tag.onerror = function () { reject(new Error("无法加载企业微信 JS-SDK")); };
      document.head.appendChild(tag);
    });
  }

  function jssdk() {
    if (!sdk) {
      var signed = api("POST", "/sidebar/api/jssdk", { url: window.location.href.split("#")[0] }).then(function (data) {
        return loadScript(data.jssdk_url).then(function () { return configure(data.signed); });
      });
      var late = new Promise(function (resolve, reject) {
        setTimeout(function () { reject(new Error("没有连接到企业微信：请在企业微信的客户聊天中使用话术库。")); }, 8000);
      });
      sdk = Promise.race([signed, late]);
      sdk.catch(function () { sdk = null; });
    }
    return sdk;
  }

  function sendReply(message) {
    return jssdk().then(function () {
      return new Promise(function (resolve, reject) {
        window.wx.invoke("sendChatMessage", message, function (res) {
          if (ok(res, "sendChatMessage")) resolve();
          else reject(new Error("发送失败：请在与客户的聊天中使用话术库。"));
        });
      });
    });
  }

  function replyItem(r, i) {
    var li = document.createElement("li"), b = document.createElement("button");
    b.type = "button";
    b.className = "qr";
    b.dataset.i = i;
    [["b", r.title], ["span", r.kind_label], ["small", r.preview]].forEach(function (part) {
      var el = document.createElement(part[0]);
      el.textContent = part[1];
      if (part[0] === "span") el.className = "pill";
      b.appendChild(el);
    });
    li.appendChild(b);
    return li;
  }

  function groupChips(box, all, current) {
    box.textContent = "";
    if (!all.length) return;
    [{ id: "", name: "全部" }].concat(all).forEach(function (g) {
      var a = document.createElement("a");
      a.href = "#";
      a.dataset.group = g.id;
      a.textContent = g.name;
      a.className = String(g.id) === current ? "on" : "";
      box.appendChild(a);
    });
  }

  function quickReplies(box) {
    var list = document.getElementById("qr-list"), groups = document.getElementById("qr-groups");
    var form = document.getElementById("qr-search"), group = "", hits = [];
    function search() {
      var q = form.elements.q.value.trim();
      var path = "/sidebar/api/quick-replies?q=" + encodeURIComponent(q) + (group ? "&group=" + group : "");
      api("GET", path).then(function (data) {
        hits = data.replies;
        groupChips(groups, data.groups, group);
        list.textContent = "";
        hits.forEach(function (r, i) { list.appendChild(replyItem(r, i)); });
        if (!hits.length) {
          var none = document.createElement("li");
          none.className = "muted";
          none.textContent = q || group ? "没有找到相关话术" : "话术库还是空的：请管理员添加话术。";
          list.appendChild(none);
        }
      }).catch(function (err) { toast(err.message); });
    }
    form.addEventListener("submit", function (ev) { ev.preventDefault(); search(); });
    groups.addEventListener("click", function (ev) {
      var a = ev.target.closest("a[data-group]");
      if (!a) return;
      ev.preventDefault();
      group = a.dataset.group;
      search();
    });
    list.addEventListener("click", function (ev) {
      var b = ev.target.closest("button.qr");
      if (!b) return;
      b.disabled = true;
      sendReply(hits[+b.dataset.i].message).then(function () {
        toast("已发送到聊天：" + hits[+b.dataset.i].title);
      }).catch(function (err) { toast(err.message); }).then(function () { b.disabled = false; });
    });
    search();
  }

  var el = document.getElementById("entry");
  if (el) entry(el);
  var rf = document.getElementById("return-form");
  if (rf) returnForm(rf);
  var qr = document.getElementById("quick-replies");
  if (qr) quickReplies(qr);
})();
