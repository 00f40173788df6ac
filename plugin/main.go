// Command ipamd is the CNI IPAM plugin of ipamd: a pipe between the container runtime and
// the ipamd daemon on the same node.
//
// It answers VERSION itself. Every other verb goes to the daemon in one HTTP request over
// the Unix socket named by ipam.server_socket, carrying the raw network config and the
// CNI_* environment (the wire contract is in docs/api.md, "CNI wire protocol"). The daemon
// decides everything else: it parses the config, checks versions and arguments, allocates,
// and writes the CNI result or error. This program prints what the daemon says and exits
// with the status the daemon chose.
//
// Only failures that happen before or instead of the daemon's answer are produced here,
// as CNI error objects: a config that is not JSON (6), an unusable ipam.server_socket or
// ipam.timeout (7), a daemon that cannot be reached or does not answer in time (11; 50 for
// STATUS).
//
// Standard library only, built with CGO_ENABLED=0: the file runs on any Linux node, with
// no interpreter, no libc and nothing else on the filesystem but the daemon's socket.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	// wireVersion names the request and answer format below; the daemon refuses, with a
	// CNI error this program can still print, any version it does not speak.
	wireVersion   = 1
	defaultSocket = "/run/ipamd/ipamd.sock"
	// Connecting to a live local daemon takes microseconds; waiting longer only delays
	// the "try again later" answer when the daemon is wedged.
	connectTimeout = 3 * time.Second
	defaultTimeout = 30.0
	maxTimeout     = 3600.0
	// sun_path holds 108 bytes on Linux, the terminating NUL included.
	maxSocketPath  = 107
	maxAnswerBytes = 8 << 20
	latestVersion  = "1.1.0"
	userAgent      = "ipamd-cni/2"
	execPath       = "/v1/cni/exec"

	errIO            = 5
	errDecode        = 6
	errInvalidConfig = 7
	errTryAgainLater = 11
	errNotAvailable  = 50
	errInternal      = 999
)

// supportedVersions must equal ipamd.cni.protocol.SUPPORTED_VERSIONS (a test compares them).
var supportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// cniEnvironment is what the runtime passes besides stdin (SPEC.md, "Parameters").
var cniEnvironment = []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"}

type cniError struct {
	CNIVersion string `json:"cniVersion"`
	Code       int    `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

func (e *cniError) Error() string { return e.Msg }

func fail(code int, msg string, details string, args ...interface{}) *cniError {
	return &cniError{Code: code, Msg: msg, Details: fmt.Sprintf(details, args...)}
}

type request struct {
	Wire   int               `json:"wire"`
	Env    map[string]string `json:"env"`
	Config string            `json:"config"`
}

// answer is the daemon's envelope. Its three fields never change meaning between wire
// versions, so that any plugin can print a newer daemon's refusal.
type answer struct {
	ExitCode *int   `json:"exitCode"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

func run(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	input, readErr := io.ReadAll(stdin)
	if getenv("CNI_COMMAND") == "VERSION" {
		// Never fails: this is how runtimes find out what the plugin speaks.
		writeJSON(stdout, map[string]interface{}{"cniVersion": versionOf(input), "supportedVersions": supportedVersions})
		return 0
	}
	reply, err := forward(input, readErr, getenv)
	if err != nil {
		var failure *cniError
		if !errors.As(err, &failure) {
			failure = fail(errInternal, "internal error in the ipamd CNI plugin", "%v", err)
		}
		if failure.Code == errTryAgainLater && getenv("CNI_COMMAND") == "STATUS" {
			// SPEC.md: STATUS reports a plugin that cannot serve ADD with 50.
			failure.Code = errNotAvailable
		}
		failure.CNIVersion = versionOf(input)
		writeJSON(stdout, failure)
		// %q: the socket path comes from the network config, and any value may hold newlines.
		fmt.Fprintf(stderr, "ipamd-cni: %q failed with code %d: %q (%q)\n", getenv("CNI_COMMAND"), failure.Code, failure.Msg, failure.Details)
		return 1
	}
	io.WriteString(stdout, reply.Stdout)
	io.WriteString(stderr, reply.Stderr)
	if *reply.ExitCode < 0 || *reply.ExitCode > 255 {
		return 1
	}
	return *reply.ExitCode
}

// versionOf returns the config's cniVersion when this plugin supports it, else the newest
// version: an unsupported version is never echoed back as if it were spoken here.
func versionOf(input []byte) string {
	var config struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(input, &config) == nil {
		for _, version := range supportedVersions {
			if config.CNIVersion == version {
				return version
			}
		}
	}
	return latestVersion
}

func writeJSON(w io.Writer, value interface{}) {
	encoded, _ := json.Marshal(value)
	w.Write(append(encoded, '\n'))
}

func forward(input []byte, readErr error, getenv func(string) string) (*answer, error) {
	if readErr != nil {
		return nil, fail(errDecode, "failed to decode the network config", "cannot read stdin: %v", readErr)
	}
	socket, timeout, err := transport(input)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, name := range cniEnvironment {
		// CNI treats an empty variable as an absent one.
		if value := getenv(name); value != "" {
			env[name] = value
		}
	}
	body, err := json.Marshal(request{Wire: wireVersion, Env: env, Config: string(input)})
	if err != nil {
		return nil, err
	}
	status, raw, err := exchange(socket, timeout, body)
	if err != nil {
		return nil, err
	}
	var reply answer
	if status == 200 && json.Unmarshal(raw, &reply) == nil && reply.ExitCode != nil {
		return &reply, nil
	}
	return nil, notAnEnvelope(socket, status, raw)
}

// transport reads the two ipam keys this program needs itself; everything else in the
// config is the daemon's to judge.
func transport(input []byte) (string, time.Duration, error) {
	if len(bytes.TrimSpace(input)) == 0 {
		return "", 0, fail(errDecode, "failed to decode the network config", "stdin is empty")
	}
	if !utf8.Valid(input) {
		return "", 0, fail(errDecode, "failed to decode the network config", "stdin is not UTF-8")
	}
	var config map[string]json.RawMessage
	if err := json.Unmarshal(input, &config); err != nil {
		return "", 0, fail(errDecode, "failed to decode the network config", "stdin must hold one JSON object: %v", err)
	}
	var ipam map[string]json.RawMessage
	if raw, ok := config["ipam"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &ipam) != nil {
			return "", 0, fail(errInvalidConfig, "ipam must be an object", "")
		}
	}
	socket := defaultSocket
	if raw, ok := ipam["server_socket"]; ok {
		if json.Unmarshal(raw, &socket) != nil || socket == "" || strings.ContainsRune(socket, 0) {
			return "", 0, fail(errInvalidConfig, "ipam.server_socket must be a non-empty path", "%s", raw)
		}
		if len(socket) > maxSocketPath {
			return "", 0, fail(errInvalidConfig, "ipam.server_socket is too long for a Unix socket", "%d bytes, at most %d", len(socket), maxSocketPath)
		}
	}
	seconds := defaultTimeout
	if raw, ok := ipam["timeout"]; ok {
		if json.Unmarshal(raw, &seconds) != nil || !(seconds > 0 && seconds <= maxTimeout) {
			return "", 0, fail(errInvalidConfig, fmt.Sprintf("ipam.timeout must be a number of seconds above 0, at most %g", maxTimeout), "%s", raw)
		}
	}
	return socket, time.Duration(seconds * float64(time.Second)), nil
}

// exchange makes one HTTP/1.1 request with "Connection: close" and returns the status and
// body of the answer. The whole exchange is bounded by timeout.
//
// Written here rather than with net/http: importing net/http costs every execution its
// package initialisation, about 0.5 ms of a 1.1 ms VERSION on a 2-core machine (and 0.5 MB
// of binary), paid twice per attachment; one request to a known server needs none of it.
func exchange(socket string, timeout time.Duration, body []byte) (int, []byte, error) {
	deadline := time.Now().Add(timeout)
	dialTimeout := connectTimeout
	if timeout < dialTimeout {
		dialTimeout = timeout
	}
	conn, err := net.DialTimeout("unix", socket, dialTimeout)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			// A deployment problem that retrying does not fix.
			return 0, nil, fail(errIO, "permission denied on the ipamd socket", "%v", err)
		}
		return 0, nil, unreachable("cannot connect to %s: %v", socket, err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: ipamd\r\nUser-Agent: %s\r\nAccept: application/json\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", execPath, userAgent, len(body))
	if _, err := conn.Write(append([]byte(head), body...)); err != nil {
		return 0, nil, lost(socket, timeout, err)
	}
	status, raw, err := readAnswer(bufio.NewReader(conn))
	if err != nil {
		return 0, nil, lost(socket, timeout, err)
	}
	return status, raw, nil
}

func unreachable(details string, args ...interface{}) *cniError {
	return fail(errTryAgainLater, "ipamd is not reachable", details, args...)
}

func lost(socket string, timeout time.Duration, err error) *cniError {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return unreachable("no answer from %s within %gs (ipam.timeout)", socket, timeout.Seconds())
	}
	return unreachable("talking to %s failed: %v", socket, err)
}

func readAnswer(reader *bufio.Reader) (int, []byte, error) {
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			return 0, nil, err
		}
		fields := strings.SplitN(strings.TrimRight(line, "\r\n"), " ", 3)
		if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/1.") {
			return 0, nil, fmt.Errorf("bad status line %q", line)
		}
		status, err := strconv.Atoi(fields[1])
		if err != nil {
			return 0, nil, fmt.Errorf("bad status line %q", line)
		}
		headers := map[string]string{}
		for {
			line, err := reader.ReadString('\n')
			if err != nil {
				return 0, nil, err
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			if name, value, found := strings.Cut(line, ":"); found {
				headers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
			}
		}
		if status >= 100 && status < 200 {
			continue // an interim answer; the real one follows
		}
		limited := io.LimitReader(reader, maxAnswerBytes+1)
		var raw []byte
		switch {
		case strings.Contains(strings.ToLower(headers["transfer-encoding"]), "chunked"):
			raw, err = readChunked(bufio.NewReader(limited))
		case headers["content-length"] != "":
			var length int
			length, err = strconv.Atoi(headers["content-length"])
			if err == nil && (length < 0 || length > maxAnswerBytes) {
				err = fmt.Errorf("answer of %d bytes", length)
			}
			if err == nil {
				raw = make([]byte, length)
				_, err = io.ReadFull(limited, raw)
			}
		default:
			raw, err = io.ReadAll(limited)
		}
		if err == nil && len(raw) > maxAnswerBytes {
			err = fmt.Errorf("answer larger than %d bytes", maxAnswerBytes)
		}
		return status, raw, err
	}
}

func readChunked(reader *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		size, err := strconv.ParseInt(sizeText, 16, 32)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			return body, nil // trailers, if any, are not needed
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(reader, chunk); err != nil {
			return nil, err
		}
		body = append(body, chunk[:size]...)
	}
}

// notAnEnvelope explains an answer that is not the wire protocol's: an error the daemon's
// HTTP layer gave before the CNI code saw the request, or a daemon older than this plugin.
func notAnEnvelope(socket string, status int, raw []byte) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			CNICode int    `json:"cniCode"`
		} `json:"error"`
	}
	json.Unmarshal(raw, &body)
	details := fmt.Sprintf("%s answered HTTP %d %s to POST %s", socket, status, body.Error.Code, execPath)
	switch {
	case status == 404 || status == 405:
		return fail(errInternal, "the ipamd daemon is older than its CNI plugin: it does not serve the CNI wire protocol", "%s", details)
	case body.Error.CNICode > 0 && body.Error.Message != "":
		return fail(body.Error.CNICode, body.Error.Message, "%s", details)
	case status >= 500:
		return fail(errTryAgainLater, "ipamd could not answer", "%s", details)
	}
	return fail(errInternal, "unexpected answer from ipamd", "%s: %.200q", details, raw)
}
