/** Parameters of {@link isHubOffline}. */
export interface IsHubOfflineParams {
  /** Environment to read HF_HUB_OFFLINE from. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/** True when HF_HUB_OFFLINE is set to 1, ON, YES or TRUE (any case), as huggingface_hub reads it. */
export function isHubOffline(params: IsHubOfflineParams = {}): boolean {
  const v = (params.env ?? process.env)["HF_HUB_OFFLINE"];
  return v !== undefined && ["1", "ON", "YES", "TRUE"].includes(v.trim().toUpperCase());
}
