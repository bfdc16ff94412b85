// The Tokio peer for bench/run-proxy.sh: a TCP proxy relaying each
// connection accepted on 127.0.0.1:PORT to 127.0.0.1:UPSTREAM with
// tokio::io::copy_bidirectional, what a Tokio user reaches for.
// usage: tokio-proxy PORT UPSTREAM [THREADS]   (1 = current_thread)
use tokio::net::{TcpListener, TcpStream};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[1].parse().unwrap();
    let upstream: u16 = args[2].parse().unwrap();
    let threads: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(1);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap()
    };
    rt.block_on(async move {
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let (mut c, _) = l.accept().await.unwrap();
            c.set_nodelay(true).ok();
            tokio::spawn(async move {
                let mut u = match TcpStream::connect(("127.0.0.1", upstream)).await {
                    Ok(u) => u,
                    Err(_) => return,
                };
                u.set_nodelay(true).ok();
                let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
            });
        }
    });
}
