// Go's channel ping-pong with the two goroutines forced onto two threads:
// each calls runtime.LockOSThread (the way to pin a goroutine to a thread
// in Go), so every message crosses the threads, as in weft's pinned
// ping-pong (channel_pingpong_cross_ns_per_roundtrip). Unbuffered channels
// as in shared/peers/go-micro, then channels of capacity 1 as weft's.
// Run with GOMAXPROCS=2. usage: go-cross [ROUNDS]
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

func pingpong(rounds int, capacity int) float64 {
	a, b := make(chan int, capacity), make(chan int, capacity)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		for i := 0; i < rounds; i++ {
			v := <-a
			b <- v
		}
		close(done)
	}()
	t := time.Now()
	for i := 0; i < rounds; i++ {
		a <- i
		<-b
	}
	ns := float64(time.Since(t).Nanoseconds()) / float64(rounds)
	<-done
	return ns
}

func main() {
	rounds := 200000
	if len(os.Args) > 1 {
		if n, err := strconv.Atoi(os.Args[1]); err == nil {
			rounds = n
		}
	}
	runtime.LockOSThread()
	procs := runtime.GOMAXPROCS(0)
	fmt.Printf("go procs=%d locked_threads=2 channel_pingpong_cross_ns_per_roundtrip=%.1f\n", procs, pingpong(rounds, 0))
	fmt.Printf("go procs=%d locked_threads=2 channel_pingpong_cross_cap1_ns_per_roundtrip=%.1f\n", procs, pingpong(rounds, 1))
}
