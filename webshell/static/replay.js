// A recorded terminal session, replayed in the browser by asciinema-player (input and output).
(function () {
  "use strict";
  const box = document.getElementById("player");
  AsciinemaPlayer.create(box.dataset.src, box, {fit: "width", idleTimeLimit: 2, theme: "asciinema"});
})();
