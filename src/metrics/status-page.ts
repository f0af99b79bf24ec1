// The status page served at / : static HTML whose script renders /status.json every 2 seconds.

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>openproxy status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; } th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; } .banned { background: #fdd; } .ok { color: #070; } .bad { color: #b00; }
#updated { color: #666; }
</style>
</head>
<body>
<h1>openproxy</h1>
<p id="updated">loading…</p>
<h2>VRRP</h2><p id="vrrp"></p>
<h2>Pools</h2><table id="pools"></table>
<h2>Servers</h2><table id="servers"></table>
<h2>Clients</h2><table id="clients"></table>
<script>
var ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };
function esc(v) {
  return String(v === null || v === undefined ? '' : v).replace(/[&<>"]/g, function (c) { return ESC[c]; });
}
function table(id, cols, rows, rowClass) {
  var h = '<tr>' + cols.map(function (c) { return '<th>' + esc(c) + '</th>'; }).join('') + '</tr>';
  h += rows.map(function (r) {
    var cells = cols.map(function (c) { return '<td>' + esc(r[c]) + '</td>'; }).join('');
    return '<tr class="' + (rowClass ? rowClass(r) : '') + '">' + cells + '</tr>';
  }).join('');
  document.getElementById(id).innerHTML = h;
}
function render(s) {
  document.getElementById('updated').textContent = 'updated ' + s.generated + ' (refreshes every 2 s)';
  document.getElementById('vrrp').textContent = s.vrrp.state + (s.vrrp.detail ? ' — ' + s.vrrp.detail : '');
  table('pools', ['database', 'user', 'pool_mode', 'cl_active', 'cl_idle', 'cl_waiting',
    'sv_active', 'sv_idle', 'sv_used', 'sv_login'], s.pools);
  table('servers', ['name', 'user', 'server', 'role', 'role_source', 'state', 'state_since', 'state_reason',
    'banned', 'ban_reason', 'connections', 'pool_size', 'lag_bytes'], s.servers,
    function (r) { return r.banned || r.state !== 'UP' ? 'banned' : ''; });
  table('clients', ['id', 'database', 'user', 'application_name', 'state', 'transactions', 'queries', 'age_s'],
    s.clients);
}
function tick() {
  // location.origin: a page opened as http://user:pass@host/ must not fetch a URL with credentials.
  var url = location.origin + '/status.json';
  fetch(url, { credentials: 'same-origin' }).then(function (r) { return r.json(); }).then(render).catch(function (e) {
    var msg = '<span class="bad">cannot reach openproxy: ' + esc(e.message) + '</span>';
    document.getElementById('updated').innerHTML = msg;
  });
}
tick();
setInterval(tick, 2000);
</script>
</body>
</html>
`;
