/*
 * wxsim JS-SDK stub: a stand-in for https://res.wx.qq.com/open/js/jweixin-1.6.0.js in pages
 * opened outside WeChat during tests. Served at /_sim/jweixin.js.
 *
 * - wx.config / wx.agentConfig send the page's signature to the simulator
 *   (POST /_sim/jssdk/verify), which recomputes it against the tickets it issued.
 * - wx.invoke('getContext' | 'getCurExternalContact') answer from /_sim/jssdk/context;
 *   wx.invoke('sendChatMessage') records what was put into the chat (POST /_sim/jssdk/sent).
 * - Share APIs record their data; wx.__sim.triggerShare('appMessage' | 'timeline') plays the
 *   user sharing: it fires the onMenuShare* success callbacks and returns the shared data.
 *
 * The simulator's address: the data-sim-url attribute of the <script> tag, else
 * window.WXSIM_URL, else the origin the script was loaded from.
 */
(function (global) {
  "use strict";
  var script = global.document && global.document.currentScript;
  var SIM =
    (script && script.getAttribute("data-sim-url")) ||
    global.WXSIM_URL ||
    (script && script.src ? new URL(script.src).origin : "");

  var st = {
    configured: null, // null: pending, true: ok, false: failed
    error: null,
    jsApiList: [],
    agentConfigured: false,
    ready: [],
    errors: [],
    share: { appMessage: null, timeline: null },
    shareCallbacks: { appMessage: [], timeline: [] },
    log: [],
  };

  function pageUrl() {
    return global.location.href.split("#")[0];
  }

  function request(method, path, body) {
    var init = { method: method, headers: { "Content-Type": "application/json" } };
    if (body !== undefined) init.body = JSON.stringify(body);
    return global.fetch(SIM + "/_sim" + path, init).then(function (r) {
      return r.json();
    });
  }

  function finish(opts, res) {
    opts = opts || {};
    var ok = /:ok$/.test(res.errMsg || res.err_msg || "");
    if (ok && opts.success) opts.success(res);
    if (!ok && opts.fail) opts.fail(res);
    if (opts.complete) opts.complete(res);
    return res;
  }

  function allowed(name) {
    return st.configured === true && st.jsApiList.indexOf(name) >= 0;
  }

  var wx = {
    config: function (cfg) {
      st.configured = null;
      st.jsApiList = (cfg && cfg.jsApiList) || [];
      request("POST", "/jssdk/verify", {
        kind: "config",
        appId: cfg.appId,
        timestamp: cfg.timestamp,
        nonceStr: cfg.nonceStr,
        signature: cfg.signature,
        url: pageUrl(),
      }).then(function (res) {
        st.log.push(["config", res]);
        st.configured = !!res.ok;
        if (res.ok) {
          st.ready.splice(0).forEach(function (fn) { fn(); });
        } else {
          st.error = { errMsg: res.errMsg };
          st.errors.splice(0).forEach(function (fn) { fn(st.error); });
        }
      });
    },
    ready: function (fn) {
      if (st.configured === true) fn();
      else st.ready.push(fn);
    },
    error: function (fn) {
      if (st.configured === false) fn(st.error);
      else st.errors.push(fn);
    },
    agentConfig: function (cfg) {
      request("POST", "/jssdk/verify", {
        kind: "agentConfig",
        corpid: cfg.corpid,
        agentid: cfg.agentid,
        timestamp: cfg.timestamp,
        nonceStr: cfg.nonceStr,
        signature: cfg.signature,
        url: pageUrl(),
      }).then(function (res) {
        st.log.push(["agentConfig", res]);
        st.agentConfigured = !!res.ok;
        finish(cfg, { errMsg: res.errMsg });
      });
    },
    checkJsApi: function (opts) {
      var result = {};
      (opts.jsApiList || []).forEach(function (name) { result[name] = true; });
      finish(opts, { checkResult: result, errMsg: "checkJsApi:ok" });
    },
    invoke: function (name, params, callback) {
      callback = callback || function () {};
      if (name === "getContext" || name === "getCurExternalContact") {
        if (!st.agentConfigured) {
          callback({ err_msg: name + ":fail no permission" });
          return;
        }
        request("GET", "/jssdk/context").then(function (ctx) {
          if (name === "getContext") {
            callback({ err_msg: "getContext:ok", entry: ctx.entry });
          } else if (ctx.external_userid) {
            callback({ err_msg: "getCurExternalContact:ok", userId: ctx.external_userid });
          } else {
            callback({ err_msg: "getCurExternalContact:fail not in a customer chat" });
          }
        });
        return;
      }
      if (name === "sendChatMessage") {
        // the real client puts the content into the open chat: the simulator records it
        if (!st.agentConfigured) {
          callback({ err_msg: "sendChatMessage:fail no permission" });
          return;
        }
        request("POST", "/jssdk/sent", params || {}).then(function (res) {
          callback({ err_msg: res.ok ? "sendChatMessage:ok" : "sendChatMessage:fail " + res.error });
        });
        return;
      }
      st.log.push(["invoke", name, params]);
      callback({ err_msg: name + ":ok" });
    },
    updateAppMessageShareData: function (opts) {
      if (!allowed("updateAppMessageShareData")) return finish(opts, { errMsg: "updateAppMessageShareData:permission denied" });
      st.share.appMessage = opts;
      finish(opts, { errMsg: "updateAppMessageShareData:ok" }); // real SDK: "settings applied"
    },
    updateTimelineShareData: function (opts) {
      if (!allowed("updateTimelineShareData")) return finish(opts, { errMsg: "updateTimelineShareData:permission denied" });
      st.share.timeline = opts;
      finish(opts, { errMsg: "updateTimelineShareData:ok" });
    },
    onMenuShareAppMessage: function (opts) {
      st.share.appMessage = opts;
      st.shareCallbacks.appMessage.push(opts);
    },
    onMenuShareTimeline: function (opts) {
      st.share.timeline = opts;
      st.shareCallbacks.timeline.push(opts);
    },
    hideOptionMenu: function () {},
    showOptionMenu: function () {},
    closeWindow: function () {},
    __sim: {
      state: st,
      /** The user shares to a chat ('appMessage') or Moments ('timeline'). */
      triggerShare: function (kind) {
        var data = st.share[kind];
        if (!data) return null;
        var res = { errMsg: (kind === "timeline" ? "shareTimeline" : "sendAppMessage") + ":ok" };
        st.shareCallbacks[kind].forEach(function (opts) {
          if (opts.success) opts.success(res);
        });
        return { title: data.title, desc: data.desc, link: data.link, imgUrl: data.imgUrl };
      },
      setSimUrl: function (url) { SIM = url; },
    },
  };

  global.wx = global.jWeixin = wx;
})(window);
