// Go peer of bench/loop_bench.cpp: the same workloads, timed here, run by
// bench/report.py with GOMAXPROCS=1 (one thread runs goroutines, as one event loop
// runs fibers). Standard library only; built with `go build` (GO111MODULE=off).
//
//	loop_peer micro [min_seconds]  prints JSON: ns per ping-pong round trip, per
//	                               buffered message, per spawn + join
//	loop_peer skynet               prints JSON: skynet's result and wall seconds
//	loop_peer fanout N             prints JSON: fan-out of N goroutines, wall
//	                               seconds and peak RSS (VmHWM, reset first)
//
// The workloads, identical across peers:
//
//	pingpong: two goroutines, two unbuffered channels, one each way; one op = the
//	          main goroutine sends an int on `ping`, the echo goroutine receives it
//	          and sends it back on `pong`, main receives it.
//	buffered: one producer, one consumer, a channel of capacity 128; one op = one
//	          message sent and received.
//	spawn_join: one op = `go f()` with f calling wg.Done(), then wg.Wait().
//	skynet:   each node spawns 10 children until 1M leaves, a leaf returns its
//	          index, a parent sums its children (through a channel of capacity 10):
//	          the result is 499999500000.
//	fanout:   N goroutines each park on one unbuffered channel (the last to start
//	          tells main first, so that all N are parked at once), then main sends
//	          each a 0 and waits for all to end (bench/stackful_vs_stackless.hpp).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func pingpong(n int) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	close(ping)
	<-pong
}

func buffered(n int) {
	ch := make(chan int, 128)
	done := make(chan int)
	go func() {
		sum := 0
		for v := range ch {
			sum += v
		}
		done <- sum
	}()
	for i := 0; i < n; i++ {
		ch <- i
	}
	close(ch)
	<-done
}

func spawnJoin(n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
		wg.Wait()
	}
}

// nsPerOp: n doubled until one run lasts minSeconds, then the median of 3 runs of n.
func nsPerOp(f func(int), minSeconds float64) float64 {
	n := 1000
	for {
		start := time.Now()
		f(n)
		if time.Since(start).Seconds() >= minSeconds/4 || n >= 1<<30 {
			break
		}
		n *= 2
	}
	n *= 4
	var runs []float64
	for r := 0; r < 3; r++ {
		start := time.Now()
		f(n)
		runs = append(runs, float64(time.Since(start).Nanoseconds())/float64(n))
	}
	sort.Float64s(runs)
	return runs[1]
}

func skynet(c chan int, num, size, div int) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int, div)
	for i := 0; i < div; i++ {
		go skynet(rc, num+i*(size/div), size/div, div)
	}
	sum := 0
	for i := 0; i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func fanout(n int) (int64, int) {
	var sum int64
	waiting, peak := 0, 0
	var mu sync.Mutex // (uncontended with GOMAXPROCS=1; keeps the counts right with more)
	allParked := make(chan int)
	release := make(chan int)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func(i int) {
			mu.Lock()
			waiting++
			if waiting > peak {
				peak = waiting
			}
			last := waiting == n
			mu.Unlock()
			if last {
				allParked <- 0
			}
			v := <-release
			mu.Lock()
			waiting--
			sum += int64(i + v)
			mu.Unlock()
			wg.Done()
		}(i)
	}
	if n > 0 {
		<-allParked
	}
	for i := 0; i < n; i++ {
		release <- 0
	}
	wg.Wait()
	return sum, peak
}

// resetPeakRSS makes VmHWM start again from VmRSS (proc(5), clear_refs "5").
func resetPeakRSS() {
	if f, err := os.OpenFile("/proc/self/clear_refs", os.O_WRONLY, 0); err == nil {
		f.WriteString("5")
		f.Close()
	}
}

// statusKB reads a "<field>: <n> kB" line of /proc/self/status (0 if absent).
func statusKB(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line[len(field)+1:])
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

func main() {
	out := map[string]interface{}{"go": runtime.Version(), "gomaxprocs": runtime.GOMAXPROCS(0)}
	mode := "micro"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "micro":
		minSeconds := 0.2
		if len(os.Args) > 2 {
			minSeconds, _ = strconv.ParseFloat(os.Args[2], 64)
		}
		out["pingpong_ns"] = nsPerOp(pingpong, minSeconds)
		out["buffered_ns"] = nsPerOp(buffered, minSeconds)
		out["spawn_join_ns"] = nsPerOp(spawnJoin, minSeconds)
	case "skynet":
		start := time.Now()
		c := make(chan int, 1)
		go skynet(c, 0, 1000000, 10)
		out["result"] = <-c
		out["seconds"] = time.Since(start).Seconds()
	case "fanout":
		n := 0
		if len(os.Args) > 2 {
			n, _ = strconv.Atoi(os.Args[2])
		}
		resetPeakRSS()
		before := statusKB("VmRSS")
		start := time.Now()
		sum, peak := fanout(n)
		out["seconds"] = time.Since(start).Seconds()
		out["n"] = n
		out["sum"] = sum
		out["peak_waiting"] = peak
		out["rss_before_kb"] = before
		out["peak_rss_kb"] = statusKB("VmHWM")
	default:
		fmt.Fprintln(os.Stderr, "usage: loop_peer [micro [min_seconds] | skynet | fanout N]")
		os.Exit(2)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
