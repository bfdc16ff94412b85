// Tokio's channel ping-pong with the two tasks forced onto two threads:
// each thread runs a current_thread runtime of its own (the way to pin a
// task to a thread in Tokio), and the tasks talk over two
// tokio::sync::mpsc channels of capacity 1, as in shared/peers/tokio-micro.
// Every message crosses the threads, as in weft's pinned ping-pong
// (channel_pingpong_cross_ns_per_roundtrip). usage: tokio-cross [ROUNDS]
use std::time::Instant;

fn main() {
    let rounds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let (tx1, mut rx1) = tokio::sync::mpsc::channel::<u64>(1);
    let (tx2, mut rx2) = tokio::sync::mpsc::channel::<u64>(1);
    let ponger = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async move {
            for _ in 0..rounds {
                let v = rx1.recv().await.unwrap();
                tx2.send(v).await.unwrap();
            }
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let t = Instant::now();
    rt.block_on(async move {
        for i in 0..rounds {
            tx1.send(i).await.unwrap();
            rx2.recv().await.unwrap();
        }
    });
    let ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    ponger.join().unwrap();
    println!("tokio threads=2 runtimes=current_thread_x2 channel_pingpong_cross_ns_per_roundtrip={:.1}", ns);
}
