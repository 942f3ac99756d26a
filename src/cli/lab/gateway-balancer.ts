// HAProxy in front of several gateways (issue 10): one address for users and
// for the storage nodes' announcements (MAYFLY_CONTROL_URL).
// - Users' requests go to gateways whose /ready answers 200 (checked every
//   500 ms, out after two failures). A gateway taken out so goes on with the
//   requests it has: they may be waiting for the store, which is why it is
//   not ready.
// - When no gateway is ready (a metadata failover, which every gateway sees
//   at once), users' requests go to the gateways that are alive (/health)
//   instead of being refused here: a gateway makes them wait for the new
//   primary (DESIGN §5.7) and serves what it can meanwhile.
// - The nodes' own calls (/internal/) go to every live gateway: a gateway is
//   not ready until enough nodes announced themselves, and they announce
//   through here.
// - A gateway whose /health fails (dead or frozen) loses its sessions at
//   once, so no client waits on it.
// - A request whose connection to a gateway failed, or that got no answer at
//   all, is sent to another gateway, only while nothing of an answer reached
//   the client (HAProxy keeps the request to replay it), so an upload is
//   never cut in two. A gateway killed mid-answer fails only the requests it
//   was answering; their clients retry.

export interface GatewayBalancer {
  /** where users and storage nodes reach the gateways */
  listen: { host: string; port: number }
  gateways: { name: string; host: string; port: number }[]
  /** HAProxy's runtime socket (`show servers state`), optional */
  statsSocket?: string
}

export function gatewayBalancerConfig(b: GatewayBalancer): string {
  const servers = b.gateways.map((g) => `  server ${g.name} ${g.host}:${g.port} check`).join('\n')
  return `global
  maxconn 4000
${b.statsSocket === undefined ? '' : `  stats socket ${b.statsSocket} mode 600 level admin\n`}defaults
  mode http
  timeout connect 1s
  timeout client 10m
  timeout server 10m
  timeout http-request 30s
  timeout http-keep-alive 10s
  timeout check 1s
  option forwardfor
  retries 2
  option redispatch 1
  retry-on conn-failure empty-response
frontend mayfly
  bind ${b.listen.host}:${b.listen.port}
  use_backend live if { path_beg /internal/ }
  use_backend ready if { nbsrv(ready) gt 0 }
  default_backend live
backend ready
  balance leastconn
  option httpchk GET /ready
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2
${servers}
backend live
  balance leastconn
  option httpchk GET /health
  http-check expect status 200
  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
${servers}
`
}
