/// `GET /`: one self-contained page (no external assets) that shows the serving process, its
/// workers and the expert heat map (layers × experts), refreshed every 2 s from `/v1/cluster`.
enum DashboardPage {
    static let html = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>ExpertMesh</title>
    <style>
      body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f6f7f9; }
      h1 { font-size: 20px; margin: 0 0 .2em; } h2 { font-size: 16px; margin: 1.4em 0 .5em; }
      .muted { color: #667; } .banner { padding: .6em 1em; border-radius: 6px; margin: .8em 0; }
      .ok { background: #e3f4e6; } .unavailable { background: #fbe4e4; } .hidden { display: none; }
      .stats { display: flex; flex-wrap: wrap; gap: .6em; }
      .stat { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: .4em .8em; }
      .stat b { display: block; font-size: 17px; }
      table { border-collapse: collapse; background: #fff; }
      th, td { border: 1px solid #dde; padding: .25em .6em; text-align: right; white-space: nowrap; }
      th { background: #eef0f4; } td.name { text-align: left; font-weight: 600; }
      .state { border-radius: 4px; padding: 0 .4em; color: #fff; }
      .state-ready { background: #2e8b57; } .state-loading { background: #b8860b; } .state-lost { background: #b22222; }
      .state-faulty { background: #8b008b; } .state-degraded { background: #d2691e; } .state-connected { background: #778; }
      #heatmap td.cell { width: 22px; height: 18px; padding: 0; border: 1px solid #fff; }
      #heatmap th { font-weight: normal; font-size: 11px; padding: 0 .3em; }
    </style>
    </head>
    <body>
    <h1>ExpertMesh <span id="model" class="muted"></span></h1>
    <div id="status" class="banner muted">loading…</div>
    <form id="keyform" class="banner unavailable hidden">
      This server needs an API key: <input id="key" type="password" size="30" autocomplete="off">
      <button type="submit">Show</button>
    </form>
    <div id="stats" class="stats"></div>
    <h2>Workers</h2>
    <table id="workers"><thead><tr><th>worker</th><th>address</th><th>state</th><th>experts</th><th>expert bytes</th>
      <th>heard</th><th>requests</th><th>round trip p50 / p99</th><th>compute p50 / p99</th><th>sent / received</th>
    </tr></thead><tbody></tbody></table>
    <p id="noworkers" class="muted hidden">No workers: this process holds every expert.</p>
    <h2>Expert load <span id="window" class="muted"></span></h2>
    <table id="heatmap"><tbody></tbody></table>
    <script>
    "use strict";
    const $ = (id) => document.getElementById(id);
    const ms = (s) => s == null ? "–" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms";
    const size = (b) => b < 1e3 ? b + " B" : b < 1e6 ? (b / 1e3).toFixed(1) + " kB"
      : b < 1e9 ? (b / 1e6).toFixed(1) + " MB" : (b / 1e9).toFixed(2) + " GB";
    function cell(row, text, cls) {
      const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
    }
    function stat(label, value) {
      const div = document.createElement("div"); div.className = "stat";
      div.innerHTML = "<b></b><span class=muted></span>";
      div.firstChild.textContent = value; div.lastChild.textContent = label; $("stats").appendChild(div);
    }
    function render(c) {
      $("model").textContent = c.model;
      const ok = c.status === "ok";
      $("status").className = "banner " + (ok ? "ok" : "unavailable");
      $("status").textContent = (ok ? "serving" : "not serving: " + (c.reason || c.status))
        + " · up " + Math.round(c.uptime_seconds) + " s";
      const e = c.engine;
      $("stats").textContent = "";
      stat("running / waiting", e.running + " / " + e.waiting);
      stat("tokens/s in / out", e.prompt_tokens_per_second.toFixed(1) + " / " + e.generated_tokens_per_second.toFixed(1));
      stat("KV cache used", (100 * e.kv_cache_usage).toFixed(1) + " %");
      stat("prefix cache hits", (100 * e.prefix_cache_hit_rate).toFixed(1) + " %");
      stat("tokens in / out", e.prompt_tokens + " / " + e.generated_tokens);
      if (c.replicas) stat("replicas per expert", c.replicas);
      const body = $("workers").tBodies[0]; body.textContent = "";
      for (const w of c.workers) {
        const row = body.insertRow(); row.className = "worker";
        cell(row, w.name, "name"); cell(row, w.address || "–");
        const state = row.insertCell(); const badge = document.createElement("span");
        badge.className = "state state-" + w.state; badge.textContent = w.state; state.appendChild(badge);
        if (w.faulty || w.degraded) badge.title = w.faulty || w.degraded;
        cell(row, w.experts); cell(row, size(w.expert_bytes));
        cell(row, w.heartbeat_age_seconds == null ? "–" : w.heartbeat_age_seconds.toFixed(1) + " s ago");
        cell(row, w.requests);
        cell(row, ms(w.round_trip_seconds.p50) + " / " + ms(w.round_trip_seconds.p99));
        cell(row, ms(w.compute_seconds.p50) + " / " + ms(w.compute_seconds.p99));
        cell(row, size(w.bytes_out) + " / " + size(w.bytes_in));
      }
      $("noworkers").className = c.workers.length ? "muted hidden" : "muted";
      renderHeatmap(c.experts);
    }
    function renderHeatmap(experts) {
      const body = $("heatmap").tBodies[0]; body.textContent = "";
      if (!experts || !experts.layers.length) { $("window").textContent = "(not measured here)"; return; }
      const recent = experts.layers.some((l) => l.tokens.some((t) => t > 0));
      $("window").textContent = recent ? "(tokens routed, last " + experts.window_seconds + " s; each layer's busiest is darkest)"
                                       : "(tokens routed since start; none lately)";
      const width = Math.max(...experts.layers.map((l) => l.tokens.length));
      const head = body.insertRow();
      for (let x = -1; x < width; x++) {
        const th = document.createElement("th"); th.textContent = x < 0 ? "layer / expert" : x; head.appendChild(th);
      }
      for (const l of experts.layers) {
        const counts = recent ? l.tokens : l.total_tokens;
        const max = Math.max(1, ...counts);
        const row = body.insertRow(); row.className = "layer";
        const th = document.createElement("th"); th.textContent = l.layer; row.appendChild(th);
        counts.forEach((n, x) => {
          const td = row.insertCell(); td.className = "cell";
          const heat = n / max;
          td.style.background = "rgb(" + Math.round(255 - 60 * heat) + "," + Math.round(245 - 190 * heat) + ","
            + Math.round(235 - 200 * heat) + ")";
          td.title = "layer " + l.layer + " expert " + x + ": " + n + " tokens"
            + (l.workers ? " · on " + l.workers[x].join(", ") : "");
          td.dataset.tokens = n;
        });
      }
    }
    let key = sessionStorage.getItem("expertmesh-key");
    $("keyform").addEventListener("submit", (event) => {
      event.preventDefault(); key = $("key").value; sessionStorage.setItem("expertmesh-key", key); refresh();
    });
    async function refresh() {
      try {
        const response = await fetch("/v1/cluster", { headers: key ? { Authorization: "Bearer " + key } : {} });
        if (response.status === 401) { $("keyform").className = "banner unavailable"; return; }
        $("keyform").className = "hidden";
        render(await response.json());
      } catch (error) {
        $("status").className = "banner unavailable";
        $("status").textContent = "cannot reach the server: " + error.message + " (retrying)";
      }
    }
    refresh();
    setInterval(refresh, 2000);
    </script>
    </body>
    </html>
    """
}
