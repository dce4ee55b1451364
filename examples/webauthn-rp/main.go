// Command webauthn-rp is a small WebAuthn relying party for trying ctapkit (or a
// browser) against a real server-side WebAuthn library, github.com/go-webauthn/webauthn.
//
//	go run ./examples/webauthn-rp                 # http://localhost:8080
//	go run ./examples/webauthn-rp -addr 127.0.0.1:0 -port-file port.txt
//
// Endpoints (JSON in, JSON out; errors are HTTP 400 with {"error": "..."}):
//
//	POST /register/begin               {"username":"alice"} -> {"publicKey":{...}} creation options
//	POST /register/finish?username=    RegistrationResponseJSON -> {"ok":true,"credentialId":...}
//	POST /login/begin                  {"username":"alice"}, or {} for a discoverable login
//	POST /login/finish[?username=]     AuthenticationResponseJSON -> {"ok":true,"user":...,"signCount":N}
//	GET  /                             a page that does the same from a browser
//
// Everything lives in memory and is gone when the process ends. scripts/demo-rp.sh
// (make demo-rp) drives it with "ctapkit webauthn create|get" and a softkey.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address; port 0 picks a free port")
	origin := flag.String("origin", "", "the one origin accepted in clientDataJSON (default http://localhost:PORT)")
	portFile := flag.String("port-file", "", "write the port actually listened on to this file")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "webauthn-rp: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if err := run(*addr, *origin, *portFile); err != nil {
		fmt.Fprintln(os.Stderr, "webauthn-rp:", err)
		os.Exit(1)
	}
}

func run(addr, origin, portFile string) error {
	// Listen first: with port 0 the origin depends on the port the kernel picks.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if origin == "" {
		// RP ID "localhost" needs a page whose host is localhost (browsers treat
		// http://localhost as a secure context), so 127.0.0.1 is not an origin here.
		origin = "http://localhost:" + strconv.Itoa(port)
	}
	s, err := newRP([]string{origin})
	if err != nil {
		ln.Close()
		return err
	}
	if portFile != "" {
		if err := writeFileAtomic(portFile, strconv.Itoa(port)+"\n"); err != nil {
			ln.Close()
			return err
		}
	}

	logger := log.New(os.Stderr, "", log.Ltime)
	srv := &http.Server{
		Handler:           logRequests(logger, s.handler()),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// Scripts wait for exactly this line on stdout, so it is printed only once the
	// socket is open (and the port file written).
	fmt.Printf("listening on http://localhost:%d\n", port)
	logger.Printf("RP ID localhost, origin %s", origin)

	// SIGINT/SIGTERM end the server cleanly, so a script's trap can just kill it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			return err
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// writeFileAtomic writes through a temporary file and a rename, so a script polling
// for the file never reads it half written.
func writeFileAtomic(name, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".port-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// logWriter records the status (and, for failures, the error text) for the log line.
type logWriter struct {
	http.ResponseWriter
	status int
	err    string
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// logRequests logs one line per request on stderr: method, path, status, time, and
// the error a failed request was answered with.
func logRequests(logger *log.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		lw := &logWriter{ResponseWriter: w}
		next.ServeHTTP(lw, r)
		line := fmt.Sprintf("%s %s %d %s", r.Method, r.URL.RequestURI(), lw.status, time.Since(start).Round(time.Microsecond))
		if lw.err != "" {
			line += " error: " + lw.err
		}
		logger.Print(line)
	})
}
