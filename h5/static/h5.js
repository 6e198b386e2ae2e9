/* Campaign page: JS-SDK share signed by the server (inside WeChat), copy the link elsewhere;
   every successful share is reported back. Vendored, no dependencies. */
(function () {
  "use strict";
  var box = document.getElementById("share");
  if (!box) return;
  var link = box.getAttribute("data-link");
  var title = box.getAttribute("data-title");
  var img = box.getAttribute("data-img");
  if (img && img.charAt(0) === "/") img = location.origin + img;

  function report(channel) {
    return fetch(box.getAttribute("data-report"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ channel: channel })
    });
  }
  window.yuchiShared = report;

  var copy = document.getElementById("copy");
  if (copy) copy.addEventListener("click", function () {
    var input = document.getElementById("share-link");
    input.select();
    var done = function () { copy.textContent = "已复制"; report("link"); };
    if (navigator.clipboard) navigator.clipboard.writeText(link).then(done, done);
    else { document.execCommand("copy"); done(); }
  });

  if (!window.wx) return;
  var page = location.href.split("#")[0];
  fetch("/h5/jssdk?url=" + encodeURIComponent(page), { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (cfg) {
      if (!cfg.signature) return;
      var apis = ["updateAppMessageShareData", "updateTimelineShareData", "onMenuShareAppMessage", "onMenuShareTimeline"];
      wx.config({ debug: false, appId: cfg.appId, timestamp: cfg.timestamp, nonceStr: cfg.nonceStr, signature: cfg.signature, jsApiList: apis });
      wx.ready(function () {
        var data = { title: title, desc: "邀请你一起参加", link: link, imgUrl: img };
        wx.updateAppMessageShareData(data);
        wx.updateTimelineShareData(data);
        wx.onMenuShareAppMessage(Object.assign({ success: function () { report("appMessage"); } }, data));
        wx.onMenuShareTimeline(Object.assign({ success: function () { report("timeline"); } }, data));
        document.documentElement.setAttribute("data-wx", "ready");
      });
      wx.error(function (res) { document.documentElement.setAttribute("data-wx", "error:" + res.errMsg); });
    });
})();
