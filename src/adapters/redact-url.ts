// Connection urls as logs and status pages may show them: no password.

export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = 'redacted'
    return u.toString()
  } catch {
    return 'invalid url'
  }
}
