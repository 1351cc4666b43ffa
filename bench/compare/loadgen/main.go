// The load generator of the comparison, the same for every path: sequential latency, a request
// rate at a fixed concurrency, one large download, or many watches held open at once while the
// upstream fires events. Prints one JSON object (watch mode: then holds its watches until stdin closes).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Mode     string  `json:"mode"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P50Us    float64 `json:"p50_us,omitempty"`
	P99Us    float64 `json:"p99_us,omitempty"`
	Rps      float64 `json:"rps,omitempty"`
	MBps     float64 `json:"mb_per_s,omitempty"`
	Bytes    int64   `json:"bytes,omitempty"`
	// The first failure, as the client saw it.
	FirstError string `json:"first_error,omitempty"`
	// watch: how long opening every watch took (until each had its first event), seconds.
	EstablishedS float64 `json:"established_s,omitempty"`
}

func main() {
	url := flag.String("url", "", "URL to GET")
	caFile := flag.String("ca", "", "PEM CA to trust (else the system roots)")
	bearer := flag.String("bearer", "", "Authorization: Bearer token")
	connectVia := flag.String("connect-via", "", "HOST:PORT or unix:PATH of an HTTP CONNECT proxy to tunnel every connection through (konnectivity)")
	mode := flag.String("mode", "latency", "latency, rate or bulk")
	n := flag.Int("n", 2000, "latency: requests")
	c := flag.Int("c", 16, "rate: concurrency")
	duration := flag.Duration("duration", 5*time.Second, "rate: how long")
	warmup := flag.Int("warmup", 200, "requests before measuring (latency, rate)")
	events := flag.Int("events", 5, "watch: events to fire once every watch is open")
	fireURL := flag.String("fire-url", "", "watch: the upstream's /fire, reached directly")
	fireCA := flag.String("fire-ca", "", "watch: PEM CA of the upstream")
	flag.Parse()

	tlsConfig := &tls.Config{}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		check(err)
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			log.Fatalf("no certificate in %s", *caFile)
		}
		tlsConfig.RootCAs = pool
	}
	transport := &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0, ForceAttemptHTTP2: false, DisableCompression: true, ResponseHeaderTimeout: 2 * time.Minute}
	if *connectVia != "" {
		transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) { return dialConnect(ctx, *connectVia, addr) }
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Minute}
	get := func() (int64, error) {
		req, err := http.NewRequest("GET", *url, nil)
		if err != nil {
			return 0, err
		}
		if *bearer != "" {
			req.Header.Set("Authorization", "Bearer "+*bearer)
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		if res.StatusCode != 200 {
			body, _ := io.ReadAll(io.LimitReader(res.Body, 300))
			return 0, fmt.Errorf("status %d: %s", res.StatusCode, body)
		}
		return io.Copy(io.Discard, res.Body)
	}
	if *mode == "watch" {
		check(json.NewEncoder(os.Stdout).Encode(watch(client, *url, *bearer, *c, *events, *fireURL, *fireCA)))
		// Hold the watches while the harness measures the tunnel's memory; it closes stdin when done.
		io.Copy(io.Discard, os.Stdin)
		return
	}
	for i := 0; i < *warmup && *mode != "bulk"; i++ {
		if _, err := get(); err != nil {
			log.Fatalf("warm-up request failed: %v", err)
		}
	}

	out := result{Mode: *mode}
	var firstError sync.Once
	noteError := func(err error) { firstError.Do(func() { out.FirstError = err.Error() }) }
	switch *mode {
	case "latency":
		samples := make([]float64, 0, *n)
		for i := 0; i < *n; i++ {
			start := time.Now()
			if _, err := get(); err != nil {
				out.Errors++
				noteError(err)
				continue
			}
			samples = append(samples, float64(time.Since(start).Microseconds()))
		}
		sort.Float64s(samples)
		out.Requests = int64(len(samples))
		if len(samples) > 0 {
			out.P50Us = samples[(len(samples)-1)/2]
			out.P99Us = samples[(len(samples)-1)*99/100]
		}
	case "rate":
		var done, failed atomic.Int64
		var mu sync.Mutex
		var samples []float64
		deadline := time.Now().Add(*duration)
		var wg sync.WaitGroup
		for w := 0; w < *c; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := make([]float64, 0, 4096)
				for time.Now().Before(deadline) {
					start := time.Now()
					if _, err := get(); err != nil {
						failed.Add(1)
						noteError(err)
						continue
					}
					local = append(local, float64(time.Since(start).Microseconds()))
					done.Add(1)
				}
				mu.Lock()
				samples = append(samples, local...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		sort.Float64s(samples)
		out.Requests, out.Errors = done.Load(), failed.Load()
		out.Rps = float64(out.Requests) / duration.Seconds()
		if len(samples) > 0 {
			out.P50Us = samples[(len(samples)-1)/2]
			out.P99Us = samples[(len(samples)-1)*99/100]
		}
	case "bulk":
		start := time.Now()
		read, err := get()
		if err != nil {
			log.Fatalf("bulk download failed after %d bytes: %v", read, err)
		}
		out.Requests, out.Bytes = 1, read
		out.MBps = float64(read) / 1e6 / time.Since(start).Seconds()
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
	check(json.NewEncoder(os.Stdout).Encode(out))
}

// watch opens c watches at once (64 dialling at a time), waits for each one's first event, then
// fires `events` events at the upstream, one after another once every watch has the previous one,
// and reports the delivery time of every event to every watch (upstream write to client read).
func watch(client *http.Client, url, bearer string, c, events int, fireURL, fireCA string) result {
	out := result{Mode: "watch"}
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(fireCA); err != nil || !pool.AppendCertsFromPEM(pem) {
		log.Fatalf("-fire-ca %q: no certificate", fireCA)
	}
	fire := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
	// Events are numbered by the upstream for all its clients: ours are the next `events` after this.
	var last struct {
		Event int `json:"event"`
	}
	res, err := fire.Get(fireURL)
	if err != nil {
		log.Fatalf("reading the upstream's last event: %v", err)
	}
	check(json.NewDecoder(res.Body).Decode(&last))
	res.Body.Close()
	base := last.Event
	var mu sync.Mutex
	delays := make([]float64, 0, c*events)
	got := make([]atomic.Int64, events+1) // got[n]: watches that have event n
	dial := make(chan struct{}, 64)
	start := time.Now()
	for i := 0; i < c; i++ {
		go func() {
			dial <- struct{}{}
			req, _ := http.NewRequest("GET", url, nil)
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			res, err := client.Do(req)
			<-dial
			if err != nil {
				log.Fatalf("opening a watch: %v", err)
			}
			if res.StatusCode != 200 {
				body, _ := io.ReadAll(io.LimitReader(res.Body, 300))
				log.Fatalf("opening a watch: status %d: %s", res.StatusCode, body)
			}
			lines := bufio.NewScanner(res.Body)
			for lines.Scan() {
				var ev struct {
					N  int   `json:"n"`
					Ts int64 `json:"ts"`
				}
				if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
					log.Fatalf("a watch event that is not JSON: %q", lines.Text())
				}
				if ev.N > 0 {
					ev.N -= base
				}
				if ev.N < 0 || ev.N > events {
					log.Fatalf("a watch event that is not ours: %q", lines.Text())
				}
				if ev.N > 0 {
					mu.Lock()
					delays = append(delays, float64(time.Now().UnixNano()-ev.Ts)/1000)
					mu.Unlock()
				}
				got[ev.N].Add(1)
			}
			log.Fatalf("a watch ended: %v", lines.Err())
		}()
	}
	waitAll := func(n int) {
		deadline := time.Now().Add(5 * time.Minute)
		for got[n].Load() < int64(c) {
			if time.Now().After(deadline) {
				log.Fatalf("only %d of %d watches had event %d after 5 minutes", got[n].Load(), c, n)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitAll(0)
	out.EstablishedS = time.Since(start).Seconds()
	for n := 1; n <= events; n++ {
		res, err := fire.Post(fireURL, "application/json", nil)
		if err != nil {
			log.Fatalf("firing event %d: %v", n, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		waitAll(n)
	}
	mu.Lock()
	sort.Float64s(delays)
	out.Requests = int64(c)
	if len(delays) > 0 {
		out.P50Us = delays[(len(delays)-1)/2]
		out.P99Us = delays[(len(delays)-1)*99/100]
	}
	mu.Unlock()
	return out
}

// dialConnect opens a TCP connection to addr through an HTTP CONNECT proxy at via.
func dialConnect(ctx context.Context, via, addr string) (net.Conn, error) {
	var d net.Dialer
	network := "tcp"
	if strings.HasPrefix(via, "unix:") {
		network, via = "unix", strings.TrimPrefix(via, "unix:")
	}
	conn, err := d.DialContext(ctx, network, via)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if res.StatusCode != 200 {
		conn.Close()
		return nil, fmt.Errorf("CONNECT %s via %s: %s", addr, via, res.Status)
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, fmt.Errorf("CONNECT %s: proxy sent data before the tunnel", addr)
	}
	return conn, nil
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
