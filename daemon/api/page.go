package api

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"time"

	agentapi "github.com/cairn-appliance/cairn/agent/api"
	"github.com/cairn-appliance/cairn/daemon/state"
)

// The status page: plain HTML rendered on the server, refreshing itself every few seconds,
// with no script and no outside resource (the appliance has no internet, nor need its viewer).
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	// containers reads a host agent's report (agent/api.HostStatus) for the page.
	"containers": func(raw json.RawMessage) []agentapi.ContainerStatus {
		var st agentapi.HostStatus
		if len(raw) == 0 || json.Unmarshal(raw, &st) != nil {
			return nil
		}
		return st.Containers
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d.Hours()))
		}
		return t.Format("2006-01-02")
	},
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>cairn{{with .Status.Site}} · {{.}}{{end}}</title>
<style>
  :root { color-scheme: light dark; --ok: #1a7f37; --busy: #9a6700; --bad: #cf222e; --idle: #57606a; }
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; padding: 1rem; }
  header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline; }
  h1 { font-size: 1.3rem; margin: 0; }
  .meta { color: var(--idle); }
  .error { border: 2px solid var(--bad); border-radius: 6px; padding: .5rem .75rem; margin: 1rem 0; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .85rem; }
  .phases { display: flex; flex-wrap: wrap; gap: .4rem; margin: 1rem 0; padding: 0; list-style: none; }
  .badge { display: inline-block; border-radius: 999px; padding: .05rem .6rem; color: #fff; font-size: .85rem; white-space: nowrap; }
  .ready { background: var(--ok); } .failed { background: var(--bad); }
  .provisioning, .deploying, .provisioned { background: var(--busy); }
  .pending, .discovered { background: var(--idle); }
  .table { overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #8884; vertical-align: top; }
  th { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--idle); }
  td.name { white-space: nowrap; font-weight: 600; }
  td.mono { font-family: ui-monospace, monospace; font-size: .85rem; }
  progress { width: 6rem; }
  h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
  pre { font-family: ui-monospace, monospace; font-size: .85rem; overflow-x: auto; padding: .5rem; border: 1px solid #8884; border-radius: 6px; }
  .mono { font-family: ui-monospace, monospace; }
  @media (max-width: 600px) { .wide { display: none; } body { padding: .5rem; } }
</style>
</head>
<body>
<header>
  <h1>cairn{{with .Status.Site}} · {{.}}{{end}}</h1>
  <span class="meta">site generation {{.Status.Generation.Applied}} applied{{if ne .Status.Generation.Attempted .Status.Generation.Applied}}, {{.Status.Generation.Attempted}} attempted{{end}}</span>
  <span class="meta">{{.Status.Hosts}} hosts</span>
  {{with .Status.Version}}<span class="meta">cairn {{.}}</span>{{end}}
</header>
{{with .Status.Ephemeral}}<div class="error" role="alert"><strong>{{.}}</strong></div>{{end}}
{{with .Status.LoadError}}<div class="error" role="alert"><strong>The site was not applied; the last good one still runs.</strong>
{{.}}</div>{{end}}
<ul class="phases">{{range .Phases}}<li><span class="badge {{.Phase}}">{{.Phase}} {{.Count}}</span></li>{{end}}</ul>
<div class="table">
<table>
<thead><tr><th>Host</th><th>Phase</th><th>Progress</th><th>Containers</th><th>IP</th><th class="wide">MAC</th><th>Last event</th></tr></thead>
<tbody>
{{range .Hosts}}<tr id="host-{{.Name}}">
  <td class="name">{{.Name}}</td>
  <td><span class="badge {{.Phase}}">{{.Phase}}</span>{{with .Reason}}<div class="meta">{{.}}</div>{{end}}</td>
  <td>{{if eq .Phase "provisioning"}}<progress max="100" value="{{.Progress}}">{{.Progress}}%</progress> {{.Progress}}%{{with .Message}}<div class="meta">{{.}}</div>{{end}}{{end}}</td>
  <td>{{range containers .Agent}}<div><span class="mono">{{.Name}}</span> {{.State}}{{with .Health}} ({{.}}){{end}}{{if .Restarts}} <span class="meta">{{.Restarts}} restarts</span>{{end}}</div>{{end}}</td>
  <td class="mono">{{.IP}}</td>
  <td class="mono wide">{{.MAC}}</td>
  <td>{{with .LastEvent}}{{.Message}} <span class="meta">{{ago .Time}}</span>{{end}}</td>
</tr>
{{else}}<tr><td colspan="7" class="meta">No hosts yet.</td></tr>{{end}}
</tbody>
</table>
</div>
{{with .Discovered}}<h2>Discovered machines</h2>
<p class="meta">These machines PXE-booted and are not in the site. To provision one, save its snippet as hosts/NAME.toml in the site (NAME is the host's name).</p>
{{range .}}<details id="snippet-{{.Name}}"><summary>{{.Name}} <span class="mono">{{.MAC}}</span></summary>
<pre>{{.Snippet}}</pre></details>
{{end}}{{end}}
</body>
</html>
`))

type phaseCount struct {
	Phase state.Phase
	Count int
}

func (s *server) page(w http.ResponseWriter, r *http.Request) {
	snap, err := s.read(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	var phases []phaseCount
	for _, p := range state.Phases {
		if n := snap.status.Phases[p]; n > 0 {
			phases = append(phases, phaseCount{p, n})
		}
	}
	var discovered []Host
	for _, h := range snap.hosts {
		if h.Snippet != "" {
			discovered = append(discovered, h)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	err = pageTmpl.Execute(w, struct {
		Status     Status
		Phases     []phaseCount
		Hosts      []Host
		Discovered []Host
	}{snap.status, phases, snap.hosts, discovered})
	if err != nil {
		s.Log.Error("rendering the status page", "error", err)
	}
}
