"use strict";
// The console page: login, bindings, the setup checklist, install with live progress, sync
// history, events arriving, and the synced organisation. Chinese and English.
(function () {
  var T = {
    zh: {
      title: "飞书集成控制台", loading: "加载中…", logout: "退出登录", login: "登录",
      loginWith: "用飞书扫码登录：", tokenLabel: "或输入引导管理员令牌（bootstrap admin token）", useToken: "使用令牌",
      notAdmin: "你的飞书账号不是该应用的管理员，无法使用控制台。", apps: "应用绑定", newApp: "新建绑定",
      appId: "App ID", appSecret: "App Secret", encryptKey: "Encrypt Key", token: "Verification Token",
      team: "团队名称", domain: "域名", delivery: "接收事件的方式", webhook: "请求地址（Webhook）", longconn: "长连接", both: "两者", enabled: "启用", qr: "开启飞书扫码登录", save: "保存", saved: "已保存",
      del: "删除", confirmDel: "确定删除这个绑定？", isSet: "已设置，末四位 ", notSet: "未设置", keep: "留空则不修改",
      checklist: "配置清单（复制到飞书开发者后台）", copy: "复制", copied: "已复制", scopes: "需要开通的权限",
      events: "需要订阅的事件", bot: "机器人", install: "安装飞书初始化", installing: "初始化中…",
      status: "状态", lastEvent: "最近收到的事件", noEvents: "尚未收到事件", lastSync: "最近一次同步",
      runs: "同步记录", org: "组织架构", members: "成员", none: "无",
      step_credentials: "凭证", step_scopes: "权限", step_contact_range: "通讯录权限范围", step_bot: "机器人", step_sync: "同步组织架构",
      state_pending: "等待", state_running: "进行中", state_ok: "成功", state_failed: "失败", state_skipped: "跳过",
      succeeded: "初始化成功", failed: "初始化未完成"
    },
    en: {
      title: "Feishu integration console", loading: "Loading…", logout: "Log out", login: "Log in",
      loginWith: "Log in by scanning with Feishu:", tokenLabel: "Or enter the bootstrap admin token", useToken: "Use token",
      notAdmin: "Your Feishu account is not an admin of this app, so it cannot use the console.", apps: "App bindings", newApp: "New binding",
      appId: "App ID", appSecret: "App Secret", encryptKey: "Encrypt Key", token: "Verification Token",
      team: "Team name", domain: "Domain", delivery: "How events arrive", webhook: "Request URL (webhook)", longconn: "Long connection", both: "Both", enabled: "Enabled", qr: "Feishu QR login on", save: "Save", saved: "Saved",
      del: "Delete", confirmDel: "Delete this binding?", isSet: "set, ends with ", notSet: "not set", keep: "leave empty to keep",
      checklist: "Checklist (paste into Feishu's developer console)", copy: "Copy", copied: "Copied", scopes: "Scopes to enable",
      events: "Events to subscribe", bot: "Bot", install: "Install / initialise", installing: "Initialising…",
      status: "Status", lastEvent: "Last event received", noEvents: "No events received yet", lastSync: "Last sync",
      runs: "Sync history", org: "Organisation", members: "Members", none: "none",
      step_credentials: "Credentials", step_scopes: "Scopes", step_contact_range: "Contact range", step_bot: "Bot", step_sync: "Organisation sync",
      state_pending: "pending", state_running: "running", state_ok: "ok", state_failed: "failed", state_skipped: "skipped",
      succeeded: "Initialisation succeeded", failed: "Initialisation did not complete"
    }
  };
  var lang = localStorage.getItem("fb-lang") || ((navigator.language || "zh").indexOf("zh") === 0 ? "zh" : "en");
  var token = sessionStorage.getItem("fb-admin-token") || "";
  var current = null, poll = null;
  var app = document.getElementById("app");

  function t(k) { return (T[lang] && T[lang][k]) || k; }
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "on") Object.keys(attrs.on).forEach(function (ev) { e.addEventListener(ev, attrs.on[ev]); });
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) e.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    });
    (kids || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function say(v) { return v && typeof v === "object" ? (v[lang] || v.en || "") : (v || ""); }
  function api(method, path, body) {
    var h = { "Accept": "application/json" };
    if (token) h.Authorization = "Bearer " + token;
    if (body !== undefined) h["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: h, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) {
        return r.text().then(function (x) {
          var j = null; try { j = x ? JSON.parse(x) : null; } catch (e) { j = { msg: x }; }
          if (!r.ok) { var err = new Error((j && j.msg) || r.statusText); err.status = r.status; throw err; }
          return j;
        });
      });
  }
  function copy(text, button) {
    function done() { button.textContent = t("copied"); button.setAttribute("data-copied", "true"); }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(); });
    } else fallback();
    function fallback() {
      var ta = el("textarea", {}, [text]); document.body.appendChild(ta); ta.select();
      try { document.execCommand("copy"); } catch (e) { /* shown anyway: the value is on screen */ }
      document.body.removeChild(ta); done();
    }
  }
  function applyStatic() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-t]").forEach(function (n) { n.textContent = t(n.getAttribute("data-t")); });
    document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
  }

  function loginView() {
    app.innerHTML = "";
    var list = el("ul", { id: "login-apps" });
    api("GET", "/console/login-options").then(function (o) {
      o.items.forEach(function (a) {
        list.appendChild(el("li", {}, [el("a", { href: "/auth/feishu/" + a.app_id + "/login?redirect=/console", class: "login-app" }, [a.team_name || a.app_id])]));
      });
    }).catch(function () {});
    var input = el("input", { type: "password", id: "admin-token", autocomplete: "off", "aria-label": t("tokenLabel") });
    app.appendChild(el("section", {}, [
      el("h2", { text: t("login") }), el("p", { text: t("loginWith") }), list,
      el("form", { id: "token-form", on: { submit: function (e) {
        e.preventDefault(); token = input.value.trim(); sessionStorage.setItem("fb-admin-token", token); boot();
      } } }, [el("label", { for: "admin-token", text: t("tokenLabel") }), input, el("p", {}, [el("button", { type: "submit", class: "primary", text: t("useToken") })])])
    ]));
  }

  function boot() {
    applyStatic();
    api("GET", "/api/v1/apps").then(function (r) {
      document.getElementById("logout").hidden = false;
      mainView(r.items);
    }).catch(function (e) {
      if (e.status === 403) {
        document.getElementById("logout").hidden = false;
        app.innerHTML = ""; app.appendChild(el("section", {}, [el("p", { id: "not-admin", class: "error", text: t("notAdmin") }), el("p", { class: "muted", text: e.message })]));
      } else { if (token) { token = ""; sessionStorage.removeItem("fb-admin-token"); } loginView(); }
    });
  }

  function mainView(items) {
    app.innerHTML = "";
    var list = el("ul", { class: "apps" });
    items.forEach(function (a) {
      list.appendChild(el("li", {}, [el("button", { type: "button", "data-app": a.app_id, "aria-current": current === a.app_id ? "true" : "false",
        on: { click: function () { current = a.app_id; mainView(items); } } }, [(a.team_name || a.app_id) + (a.enabled ? "" : " ⏸")])]));
    });
    list.appendChild(el("li", {}, [el("button", { type: "button", id: "new-app", on: { click: function () { current = null; mainView(items); } } }, ["+ " + t("newApp")])]));
    var detail = el("div", { id: "detail" });
    app.appendChild(el("div", { class: "layout" }, [el("section", {}, [el("h2", { text: t("apps") }), list]), detail]));
    var chosen = items.filter(function (a) { return a.app_id === current; })[0];
    detail.appendChild(form(chosen));
    if (chosen) showApp(chosen.app_id, detail);
  }

  function field(id, label, value, attrs) {
    var i = el("input", Object.assign({ id: id, name: id, type: "text", value: value || "" }, attrs || {}));
    return [el("label", { for: id, text: label }), i];
  }
  function secretField(id, label, view) {
    var hint = view && view.set ? t("isSet") + view.last4 + " — " + t("keep") : t("notSet");
    return field(id, label + " (" + hint + ")", "", { type: "password", autocomplete: "off" });
  }
  function form(a) {
    var msg = el("p", { id: "form-msg", role: "status" });
    var f = el("form", { id: "binding-form" }, [].concat(
      field("app_id", t("appId"), a && a.app_id, a ? { readonly: true } : { placeholder: "cli_0123456789abcdef", required: true }),
      secretField("app_secret", t("appSecret"), a && a.secrets.app_secret),
      secretField("encrypt_key", t("encryptKey"), a && a.secrets.encrypt_key),
      secretField("verification_token", t("token"), a && a.secrets.verification_token),
      field("team_name", t("team"), a && a.team_name),
      [el("label", { for: "domain", text: t("domain") }), el("select", { id: "domain" }, [
        el("option", { value: "feishu", selected: !a || a.domain === "feishu" }, ["Feishu 飞书"]),
        el("option", { value: "lark", selected: a && a.domain === "lark" }, ["Lark"])])],
      [el("label", { for: "delivery", text: t("delivery") }), el("select", { id: "delivery" }, [
        el("option", { value: "webhook", selected: !a || a.delivery === "webhook" }, [t("webhook")]),
        el("option", { value: "long_connection", selected: a && a.delivery === "long_connection" }, [t("longconn")]),
        el("option", { value: "both", selected: a && a.delivery === "both" }, [t("both")])])],
      [el("div", { class: "row" }, [
        el("label", {}, [el("input", { type: "checkbox", id: "enabled", checked: !a || a.enabled }), " " + t("enabled")]),
        el("label", {}, [el("input", { type: "checkbox", id: "qr_login_enabled", checked: a && a.qr_login_enabled }), " " + t("qr")])])],
      [el("div", { class: "row" }, [el("button", { type: "submit", class: "primary", id: "save", text: t("save") }),
        a ? el("button", { type: "button", id: "delete", text: t("del"), on: { click: function () {
          if (!confirm(t("confirmDel"))) return;
          api("DELETE", "/api/v1/apps/" + a.app_id).then(function () { current = null; boot(); }).catch(function (e) { msg.className = "error"; msg.textContent = e.message; });
        } } }) : null]), msg]
    ));
    f.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { team_name: f.team_name.value, domain: document.getElementById("domain").value,
        delivery: document.getElementById("delivery").value,
        enabled: document.getElementById("enabled").checked, qr_login_enabled: document.getElementById("qr_login_enabled").checked };
      ["app_secret", "encrypt_key", "verification_token"].forEach(function (k) { if (f[k].value) body[k] = f[k].value; });
      var req = a ? api("PATCH", "/api/v1/apps/" + a.app_id, body) : api("POST", "/api/v1/apps", Object.assign({ app_id: f.app_id.value.trim() }, body));
      req.then(function (b) { current = b.app_id; msg.className = "ok"; msg.textContent = t("saved"); setTimeout(boot, 300); })
        .catch(function (e) { msg.className = "error"; msg.textContent = e.message; });
    });
    return el("section", {}, [el("h2", { text: a ? (a.team_name || a.app_id) : t("newApp") }), f]);
  }

  function showApp(id, detail) {
    var status = el("section", { id: "status" }, [el("h2", { text: t("status") })]);
    var check = el("section", { id: "checklist" }, [el("h2", { text: t("checklist") })]);
    var inst = el("section", { id: "install" }, [el("h2", { text: t("install") })]);
    var runs = el("section", { id: "runs" }, [el("h2", { text: t("runs") })]);
    var org = el("section", { id: "org" }, [el("h2", { text: t("org") })]);
    [status, inst, check, runs, org].forEach(function (s) { detail.appendChild(s); });
    api("GET", "/api/v1/apps/" + id).then(function (a) {
      var ev = a.activity ? t("lastEvent") + ": " + a.activity.last_event_type + " @ " + new Date(a.activity.last_event_at).toLocaleString() + " (" + a.activity.events + ")" : t("noEvents");
      status.appendChild(el("p", { id: "activity", text: ev }));
      if (a.last_sync) status.appendChild(el("p", { text: t("lastSync") + ": " + a.last_sync.status + " @ " + new Date(a.last_sync.started_at).toLocaleString() }));
    }).catch(function () {});
    api("GET", "/api/v1/apps/" + id + "/setup").then(function (c) {
      if (c.warning) check.appendChild(el("p", { class: "error", text: say(c.warning) }));
      var tb = el("table", {}, [el("tbody", {}, c.urls.map(function (u) {
        var b = el("button", { type: "button", class: "copy", "data-key": u.key, text: t("copy") });
        b.addEventListener("click", function () { copy(u.value, b); });
        return el("tr", {}, [el("th", { scope: "row" }, [say(u.label), el("div", { class: "muted", text: say(u.where) })]), el("td", {}, [el("code", { "data-key": u.key, text: u.value })]), el("td", {}, [b])]);
      }))]);
      check.appendChild(tb);
      check.appendChild(el("h3", { text: t("scopes") }));
      check.appendChild(el("ul", {}, c.scopes.map(function (s) { return el("li", {}, [el("code", { text: s.scope }), " " + say(s.label)]); })));
      check.appendChild(el("h3", { text: t("events") }));
      check.appendChild(el("ul", {}, c.events.map(function (s) { return el("li", {}, [el("code", { text: s.event }), " " + say(s.label)]); })));
      check.appendChild(el("h3", { text: t("bot") }));
      check.appendChild(el("p", { text: say(c.bot) }));
    }).catch(function () {});
    var steps = el("ol", { class: "steps", id: "steps" });
    var result = el("p", { id: "install-result", role: "status" });
    var btn = el("button", { type: "button", class: "primary", id: "install-button", text: t("install") });
    btn.addEventListener("click", function () {
      btn.disabled = true; btn.textContent = t("installing"); result.textContent = "";
      api("POST", "/api/v1/apps/" + id + "/install").then(function (r) { follow(id, r.run_id); })
        .catch(function (e) { btn.disabled = false; btn.textContent = t("install"); result.className = "error"; result.textContent = e.message; });
    });
    function render(run) {
      steps.innerHTML = "";
      run.steps.forEach(function (s) {
        steps.appendChild(el("li", { "data-state": s.state, "data-step": s.name }, [
          el("strong", { text: t("step_" + s.name) }), " — " + t("state_" + s.state) + (s.detail ? ": " + say(s.detail) : "")]));
      });
      if (run.status !== "running") {
        btn.disabled = false; btn.textContent = t("install");
        result.className = run.status === "succeeded" ? "ok" : "error";
        result.textContent = t(run.status);
        result.setAttribute("data-status", run.status);
        loadRuns(); loadOrg();
      }
    }
    function follow(app, run) {
      if (poll) clearInterval(poll);
      poll = setInterval(function () {
        api("GET", "/api/v1/apps/" + app + "/install/" + run).then(function (r) { render(r); if (r.status !== "running") clearInterval(poll); })
          .catch(function () {});
      }, 700);
    }
    inst.appendChild(el("div", {}, [btn]));
    inst.appendChild(steps);
    inst.appendChild(result);
    api("GET", "/api/v1/apps/" + id + "/install").then(function (r) { if (r.items[0]) { render(r.items[0]); result.removeAttribute("data-status"); } }).catch(function () {});
    function loadRuns() {
      var box = runs.querySelector("table"); if (box) runs.removeChild(box);
      api("GET", "/api/v1/apps/" + id + "/sync/runs").then(function (r) {
        runs.appendChild(el("table", {}, [el("tbody", {}, r.items.slice(0, 10).map(function (x) {
          var c = x.counts || {};
          return el("tr", {}, [el("td", { text: new Date(x.started_at).toLocaleString() }), el("td", { text: x.trigger }), el("td", { text: x.status }),
            el("td", { text: JSON.stringify(c.users || c) })]);
        }))]));
      }).catch(function () {});
    }
    function loadOrg() {
      var old = org.querySelector(".tree"); if (old) org.removeChild(old);
      api("GET", "/api/v1/apps/" + id + "/departments").then(function (r) {
        // The read API answers the tree: {tree: [{..., children: [...]}]}.
        var roots = r.tree || [];
        function branch(list) {
          return el("ul", {}, list.map(function (d) {
            var m = el("div", { class: "muted" });
            var b = el("button", { type: "button", class: "dept", text: d.name + " (" + (d.member_count || 0) + ")", on: { click: function () {
              api("GET", "/api/v1/apps/" + id + "/departments/" + d.open_department_id + "/members?page_size=50").then(function (x) {
                m.textContent = t("members") + ": " + ((x.items || []).map(function (u) { return u.name; }).join("、") || t("none"));
              }).catch(function (e) { m.textContent = e.message; });
            } } });
            return el("li", {}, [b, m, d.children && d.children.length ? branch(d.children) : null]);
          }));
        }
        var tree = el("div", { class: "tree", id: "tree" });
        tree.appendChild(roots.length ? branch(roots) : el("p", { class: "muted", text: t("none") }));
        org.appendChild(tree);
      }).catch(function () {});
    }
    loadRuns(); loadOrg();
  }

  document.getElementById("lang").addEventListener("click", function () {
    lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("fb-lang", lang); boot();
  });
  document.getElementById("logout").addEventListener("click", function () {
    token = ""; sessionStorage.removeItem("fb-admin-token");
    fetch("/auth/logout", { method: "POST", credentials: "same-origin" }).finally(boot);
  });
  boot();
})();
