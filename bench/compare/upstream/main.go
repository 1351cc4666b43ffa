// The one upstream every path of the comparison reaches: HTTPS with a certificate made at start,
// a 36-byte JSON answer for small requests, a streamed body of any size for bulk, and watches:
// any GET with ?watch= streams watch events (JSON lines, each with the time it was written), one
// at once and one more for every POST /fire.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// watchers holds one channel per open watch; /fire sends the next event number to each.
type watchers struct {
	mu    sync.Mutex
	next  int
	chans map[chan int]struct{}
}

func (w *watchers) add() chan int {
	ch := make(chan int, 64)
	w.mu.Lock()
	w.chans[ch] = struct{}{}
	w.mu.Unlock()
	return ch
}

func (w *watchers) remove(ch chan int) {
	w.mu.Lock()
	delete(w.chans, ch)
	w.mu.Unlock()
}

// fire hands event number n to every watch without blocking on a slow one (a full channel drops it: the bench then waits in vain and says so).
func (w *watchers) fire() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	for ch := range w.chans {
		select {
		case ch <- w.next:
		default:
		}
	}
	return w.next, len(w.chans)
}

// watchEvent is one line of a watch: Kubernetes' watch event shape, and when it was written (ns since the epoch).
func watchEvent(kind string, n int) []byte {
	return []byte(fmt.Sprintf("{\"type\":%q,\"object\":{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"watched\",\"resourceVersion\":\"%d\"}},\"n\":%d,\"ts\":%d}\n", kind, n, n, time.Now().UnixNano()))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	caOut := flag.String("ca-out", "", "write the certificate (its own CA) here, PEM")
	flag.Parse()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "bench upstream"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	check(err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	check(err)
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	check(err)
	if *caOut != "" {
		check(os.WriteFile(*caOut, certPEM, 0o644))
	}

	small := []byte(`{"kind":"Status","status":"Success"}`)
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = 'x'
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		size, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || size < 0 {
			http.Error(w, "bytes=N", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for size > 0 {
			n := int64(len(block))
			if size < n {
				n = size
			}
			if _, err := w.Write(block[:n]); err != nil {
				return
			}
			size -= n
		}
	})
	open := &watchers{chans: map[chan int]struct{}{}}
	mux.HandleFunc("/fire", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			// The last event's number, firing nothing: a client's events are numbered from here.
			open.mu.Lock()
			n, count := open.next, len(open.chans)
			open.mu.Unlock()
			fmt.Fprintf(w, "{\"event\":%d,\"watches\":%d}\n", n, count)
			return
		}
		if r.Method != http.MethodPost {
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
			return
		}
		n, count := open.fire()
		fmt.Fprintf(w, "{\"event\":%d,\"watches\":%d}\n", n, count)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "" {
			w.Header().Set("Content-Type", "application/json")
			w.Write(small)
			return
		}
		flusher := w.(http.Flusher)
		ch := open.add()
		defer open.remove(ch)
		w.Header().Set("Content-Type", "application/json")
		if _, err := w.Write(watchEvent("ADDED", 0)); err != nil {
			return
		}
		flusher.Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case n := <-ch:
				if _, err := w.Write(watchEvent("MODIFIED", n)); err != nil {
					return
				}
				flusher.Flush()
			}
		}
	})
	ln, err := net.Listen("tcp", *listen)
	check(err)
	// The port on stdout, first line: the harness reads it.
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	server := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.ServeTLS(ln, "", ""))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
