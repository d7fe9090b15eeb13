// An auditor's view of a live terminal: output only, as it happens.
(function () {
  "use strict";
  const box = document.getElementById("live");
  const term = new Terminal({disableStdin: true, fontSize: 14, theme: {background: "#111418"}});
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const ws = new WebSocket(`wss://${location.host}/ws/watch/${encodeURIComponent(box.dataset.terminal)}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (event) => term.write(new Uint8Array(event.data));
  ws.onclose = (event) => term.write(`\r\n[session ended${event.reason ? ": " + event.reason : ""}]\r\n`);
})();
