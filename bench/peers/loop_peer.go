// Go peer of bench/loop_bench.cpp: the same workloads, timed here, run by
// bench/report.py with GOMAXPROCS=1 (one thread runs goroutines, as one event loop
// runs fibers). Standard library only; built with `go build` (GO111MODULE=off).
//
//	loop_peer micro [min_seconds]  prints JSON: ns per ping-pong round trip, per
//	                               buffered message, per spawn + join
//	loop_peer skynet               prints JSON: skynet's result and wall seconds
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
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
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
	default:
		fmt.Fprintln(os.Stderr, "usage: loop_peer [micro [min_seconds] | skynet]")
		os.Exit(2)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
