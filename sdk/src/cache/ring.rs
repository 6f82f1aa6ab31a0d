//! Consistent hashing of keys onto memcached servers (ketama-style ring).
//!
//! Each server owns many points on a 64-bit ring; a key belongs to the first point at
//! or after its hash. Adding a server moves only the keys that now fall on its points
//! (about 1/n of them), and a server marked down hands its keys to the next live point
//! instead of failing them.

/// Points per server: enough for an even spread with a handful of servers.
const POINTS_PER_SERVER: u32 = 160;

/// FNV-1a followed by a 64-bit finaliser (MurmurHash3's fmix64) for avalanche. Stable
/// across builds and platforms, unlike std's hasher, because the warmer and every
/// terminal server must place a key on the same server.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[derive(Debug, Clone)]
pub(crate) struct Ring {
    /// (point, server index), sorted by point.
    points: Vec<(u64, usize)>,
    servers: usize,
}

impl Ring {
    pub fn new(servers: &[String]) -> Ring {
        let mut points: Vec<(u64, usize)> = servers
            .iter()
            .enumerate()
            .flat_map(|(index, name)| {
                (0..POINTS_PER_SERVER).map(move |p| (hash(format!("{name}#{p}").as_bytes()), index))
            })
            .collect();
        points.sort_unstable();
        Ring {
            points,
            servers: servers.len(),
        }
    }

    /// Servers in the order a key should try them: its owner first, then the next
    /// distinct servers around the ring.
    pub fn candidates(&self, key: &str) -> Vec<usize> {
        if self.points.is_empty() {
            return Vec::new();
        }
        let h = hash(key.as_bytes());
        let start = self.points.partition_point(|(point, _)| *point < h);
        let mut order = Vec::with_capacity(self.servers);
        for i in 0..self.points.len() {
            let (_, server) = self.points[(start + i) % self.points.len()];
            if !order.contains(&server) {
                order.push(server);
                if order.len() == self.servers {
                    break;
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 11211 + i)).collect()
    }

    fn owners(ring: &Ring, keys: usize) -> Vec<usize> {
        (0..keys)
            .map(|k| ring.candidates(&format!("lotsync:e:lot:{k}"))[0])
            .collect()
    }

    #[test]
    fn keys_spread_evenly() {
        let ring = Ring::new(&servers(4));
        let mut counts = [0usize; 4];
        for owner in owners(&ring, 20_000) {
            counts[owner] += 1;
        }
        for count in counts {
            assert!((3_500..=6_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn one_more_server_moves_few_keys() {
        let before = owners(&Ring::new(&servers(3)), 20_000);
        let after = owners(&Ring::new(&servers(4)), 20_000);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // Ideal is 1/4; modulo hashing would move about 3/4.
        assert!(moved < 20_000 * 35 / 100, "{moved} of 20000 keys moved");
        assert!(
            before.iter().zip(&after).all(|(a, b)| a == b || *b == 3),
            "keys only move to the new server"
        );
    }

    #[test]
    fn candidates_list_every_server_once_owner_first() {
        let ring = Ring::new(&servers(3));
        let order = ring.candidates("some-key");
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
        assert_eq!(order[0], owners_of(&ring, "some-key"));
    }

    fn owners_of(ring: &Ring, key: &str) -> usize {
        ring.candidates(key)[0]
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned values: the warmer and the terminals must agree across builds.
        assert_eq!(hash(b"lotsync"), 0x47ae7164697b496c);
        assert_eq!(hash(b""), 0xefd01f60ba992926);
        assert_ne!(hash(b"a"), hash(b"b"));
    }
}
