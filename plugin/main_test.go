package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type outcome struct {
	code           int
	stdout, stderr string
}

func invoke(t *testing.T, stdin string, env map[string]string) outcome {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(strings.NewReader(stdin), &stdout, &stderr, func(name string) string { return env[name] })
	return outcome{code, stdout.String(), stderr.String()}
}

func cniErrorOf(t *testing.T, out outcome, code int) cniError {
	t.Helper()
	if out.code != 1 {
		t.Fatalf("exit %d, want 1: %+v", out.code, out)
	}
	var failure cniError
	if err := json.Unmarshal([]byte(out.stdout), &failure); err != nil {
		t.Fatalf("stdout is not one CNI error object: %q", out.stdout)
	}
	if failure.Code != code || failure.Msg == "" {
		t.Fatalf("got %+v, want code %d", failure, code)
	}
	return failure
}

func config(socket string, extra string) string {
	return `{"cniVersion": "1.0.0", "name": "net", "ipam": {"type": "ipamd", "server_socket": "` + socket + `"` + extra + `}}`
}

var add = map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "net1"}

func TestVersionNeverEchoesAnUnsupportedVersion(t *testing.T) {
	for stdin, want := range map[string]string{
		`{"cniVersion": "0.4.0"}`: "0.4.0",
		`{"cniVersion": "1.1.0"}`: "1.1.0",
		`{"cniVersion": "9.9.9"}`: "1.1.0",
		`{"cniVersion": "0.2.0"}`: "1.1.0",
		``:                        "1.1.0",
		`not json`:                "1.1.0",
	} {
		out := invoke(t, stdin, map[string]string{"CNI_COMMAND": "VERSION"})
		var answer struct {
			CNIVersion        string   `json:"cniVersion"`
			SupportedVersions []string `json:"supportedVersions"`
		}
		if out.code != 0 || json.Unmarshal([]byte(out.stdout), &answer) != nil {
			t.Fatalf("%q: %+v", stdin, out)
		}
		if answer.CNIVersion != want || strings.Join(answer.SupportedVersions, ",") != "0.3.0,0.3.1,0.4.0,1.0.0,1.1.0" {
			t.Fatalf("%q: got %+v, want %s", stdin, answer, want)
		}
	}
}

func TestUndecodableConfigIsCode6(t *testing.T) {
	for _, stdin := range []string{"", "  ", `{"cniVersion": "1.0.0",`, "[1, 2]", "NaN", `{"a": 1} trailing`, "\xff\xfe{}"} {
		failure := cniErrorOf(t, invoke(t, stdin, add), errDecode)
		if failure.CNIVersion != latestVersion {
			t.Fatalf("%q: error written in %q", stdin, failure.CNIVersion)
		}
	}
}

func TestBadTransportSettingsAreCode7(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 120)
	for _, stdin := range []string{
		`{"cniVersion": "1.0.0", "name": "n", "ipam": "ipamd"}`,
		config("", ""),
		config(long, ""),
		`{"cniVersion": "1.0.0", "ipam": {"server_socket": 5}}`,
		config("/tmp/s.sock", `, "timeout": 0`),
		config("/tmp/s.sock", `, "timeout": -1`),
		config("/tmp/s.sock", `, "timeout": "5"`),
		config("/tmp/s.sock", `, "timeout": true`),
		config("/tmp/s.sock", `, "timeout": 1e300`),
	} {
		failure := cniErrorOf(t, invoke(t, stdin, add), errInvalidConfig)
		if failure.CNIVersion != "1.0.0" {
			t.Fatalf("%q: error written in %q", stdin, failure.CNIVersion)
		}
	}
}

func TestAnUnreachableDaemonIsCode11NamingTheSocket(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "absent.sock")
	failure := cniErrorOf(t, invoke(t, config(missing, ""), add), errTryAgainLater)
	if !strings.Contains(failure.Details, missing) {
		t.Fatalf("details do not name the socket: %+v", failure)
	}
	status := map[string]string{"CNI_COMMAND": "STATUS"}
	failure = cniErrorOf(t, invoke(t, strings.Replace(config(missing, ""), "1.0.0", "1.1.0", 1), status), errNotAvailable)
	if failure.CNIVersion != "1.1.0" || !strings.Contains(failure.Details, missing) {
		t.Fatalf("STATUS: %+v", failure)
	}
	// A socket file left behind by a daemon that is gone: connect() is refused.
	stale := filepath.Join(dir, "stale.sock")
	listener, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	listener.(*net.UnixListener).SetUnlinkOnClose(false)
	listener.Close()
	failure = cniErrorOf(t, invoke(t, config(stale, ""), add), errTryAgainLater)
	if !strings.Contains(failure.Details, "refused") {
		t.Fatalf("got %+v", failure)
	}
}

func TestADaemonThatNeverAnswersIsCode11WithinTheTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "silent.sock")
	listener, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	started := time.Now()
	failure := cniErrorOf(t, invoke(t, config(path, `, "timeout": 0.3`), add), errTryAgainLater)
	if elapsed := time.Since(started); elapsed < 300*time.Millisecond || elapsed > 10*time.Second {
		t.Fatalf("took %v", elapsed)
	}
	if !strings.Contains(failure.Details, "0.3s") {
		t.Fatalf("got %+v", failure)
	}
}

type recorded struct {
	method, path, userAgent, contentType string
	body                                 request
}

// fakeDaemon serves one handler on a Unix socket and records what it was sent.
func fakeDaemon(t *testing.T, handler func(http.ResponseWriter, *http.Request)) (string, *[]recorded) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipamd.sock")
	listener, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var seen []recorded
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		entry := recorded{method: r.Method, path: r.URL.Path, userAgent: r.UserAgent(), contentType: r.Header.Get("Content-Type")}
		json.Unmarshal(raw, &entry.body)
		seen = append(seen, entry)
		handler(w, r)
	})}
	go server.Serve(listener)
	t.Cleanup(func() { server.Close() })
	return path, &seen
}

func TestTheDaemonsAnswerIsPrintedAndItsExitStatusUsed(t *testing.T) {
	socket, seen := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"exitCode": 1, "stdout": "{\"code\": 101}\n", "stderr": "held\n"}`))
	})
	stdin := config(socket, `, "range": "192.0.2.0/24"`) + "\n"
	env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "net1", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p", "CNI_NETNS": ""}
	out := invoke(t, stdin, env)
	if out.code != 1 || out.stdout != "{\"code\": 101}\n" || out.stderr != "held\n" {
		t.Fatalf("got %+v", out)
	}
	if len(*seen) != 1 {
		t.Fatalf("%d requests, want one", len(*seen))
	}
	got := (*seen)[0]
	if got.method != "POST" || got.path != execPath || got.userAgent != userAgent || got.contentType != "application/json" {
		t.Fatalf("request %+v", got)
	}
	if got.body.Wire != wireVersion || got.body.Config != stdin {
		t.Fatalf("body %+v", got.body)
	}
	delete(env, "CNI_NETNS") // empty is absent
	if len(got.body.Env) != len(env) {
		t.Fatalf("env %v, want %v", got.body.Env, env)
	}
	for name, value := range env {
		if got.body.Env[name] != value {
			t.Fatalf("env %v, want %v", got.body.Env, env)
		}
	}
}

func TestChunkedAndInterimAnswers(t *testing.T) {
	socket, _ := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for _, piece := range []string{`{"exitCode": 0, "std`, `out": "{}\n", "stderr": ""}`} {
			w.Write([]byte(piece))
			w.(http.Flusher).Flush() // no Content-Length: the server sends chunks
		}
	})
	out := invoke(t, config(socket, ""), add)
	if out.code != 0 || out.stdout != "{}\n" {
		t.Fatalf("got %+v", out)
	}
}

func TestAnswersOutsideTheProtocolAreExplained(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		code   int
		msg    string
	}{
		{404, `{"error": {"code": "not_found", "message": "no route", "cniCode": 100}}`, errInternal, "older than its CNI plugin"},
		{401, `{"error": {"code": "unauthorized", "message": "a bearer token is required", "cniCode": 100}}`, 100, "a bearer token is required"},
		{503, `<html>bad gateway</html>`, errTryAgainLater, "could not answer"},
		{200, `not json`, errInternal, "unexpected answer"},
		{200, `{"ips": []}`, errInternal, "unexpected answer"},
	} {
		socket, _ := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(c.status)
			w.Write([]byte(c.body))
		})
		failure := cniErrorOf(t, invoke(t, config(socket, ""), add), c.code)
		if !strings.Contains(failure.Msg, c.msg) || !strings.Contains(failure.Details, socket) {
			t.Fatalf("%d %s: got %+v", c.status, c.body, failure)
		}
	}
}

func TestADaemonHangingUpIsCode11(t *testing.T) {
	socket, _ := fakeDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	cniErrorOf(t, invoke(t, config(socket, ""), add), errTryAgainLater)
}

func TestFailuresOnStderrAreOneEscapedLine(t *testing.T) {
	out := invoke(t, config(`/tmp/a\nforged line`, ""), add)
	cniErrorOf(t, out, errTryAgainLater)
	if strings.Count(out.stderr, "\n") != 1 || !strings.Contains(out.stderr, `\n`) {
		t.Fatalf("stderr %q", out.stderr)
	}
}
