-- Which `serve` process holds a reverse-connected host's tunnel now
-- (empty: none), and since when (Unix milliseconds): only that process
-- reaches the host, so `show` and a process without it can say where it is.
ALTER TABLE host_tunnels ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE host_tunnels ADD COLUMN connected_at BIGINT;
