// Command front is a Go net/http front for the test emulator: it hands the emulator each request
// the way kube-apiserver's own Go code sees it. kube-apiserver's handlers read only
// req.URL.Query() (Go's url.ParseQuery); the front replaces the raw query by that parse,
// re-encoded, so the emulator executes what the real apiserver would execute, and a gateway that
// judged a different reading is caught by the tests.
//
// Usage: front -upstream https://127.0.0.1:PORT -upstream-ca CA.pem -cert CERT.pem -key KEY.pem
// It prints "listening on https://127.0.0.1:PORT" once it serves, then a line per request
// ("<method> <path>?<query as Go parsed it>") on stdout.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

const keptXFF = "X-Front-Kept-Forwarded-For"

// restoreXFF puts back the X-Forwarded-For header the gateway sent, whatever ReverseProxy added.
type restoreXFF struct{ next http.RoundTripper }

func (t restoreXFF) RoundTrip(r *http.Request) (*http.Response, error) {
	if kept, ok := r.Header[keptXFF]; ok {
		r.Header["X-Forwarded-For"] = kept
		r.Header.Del(keptXFF)
	}
	return t.next.RoundTrip(r)
}

func main() {
	upstream := flag.String("upstream", "", "the emulator's https URL")
	upstreamCA := flag.String("upstream-ca", "", "the CA that signed the emulator's certificate")
	certFile := flag.String("cert", "", "this front's serving certificate")
	keyFile := flag.String("key", "", "this front's serving key")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("bad -upstream %q: %v", *upstream, err)
	}
	caPEM, err := os.ReadFile(*upstreamCA)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatalf("no certificate in %s", *upstreamCA)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}

	proxy := &httputil.ReverseProxy{
		Director: func(r *http.Request) {
			// What the apiserver's handlers read: Go's parse (pairs with ';' or bad escapes dropped).
			r.URL.RawQuery = r.URL.Query().Encode()
			fmt.Printf("%s %s?%s\n", r.Method, r.URL.Path, r.URL.RawQuery)
			// ReverseProxy appends its own peer to X-Forwarded-For after the Director; the emulator
			// should see the header as the gateway sent it, so it is kept aside and put back.
			r.Header[keptXFF] = r.Header["X-Forwarded-For"]
			r.URL.Scheme = target.Scheme
			r.URL.Host = target.Host
			r.Host = target.Host
		},
		Transport: restoreXFF{&http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			ForceAttemptHTTP2: false,
		}},
		FlushInterval: -1, // watches, logs -f: pass every write through at once
		ErrorLog:      log.New(os.Stderr, "front: ", 0),
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{
		Handler:   proxy,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		ErrorLog:  log.New(os.Stderr, "front: ", 0),
	}
	fmt.Printf("listening on https://%s\n", ln.Addr().String())
	log.Fatal(server.ServeTLS(ln, "", ""))
}
