// The few Reflect metadata functions @peculiar/x509's DI container (tsyringe) checks for at load time.
// Import this before "@peculiar/x509"; it leaves an existing polyfill untouched.

type Key = unknown;
type Target = object;
const store = new WeakMap<Target, Map<string | symbol | undefined, Map<Key, unknown>>>();

function getOwnMetadata(key: Key, target: Target, property?: string | symbol): unknown {
  return store.get(target)?.get(property)?.get(key);
}

function getMetadata(key: Key, target: Target, property?: string | symbol): unknown {
  for (let t: Target | null = target; t; t = Object.getPrototypeOf(t)) {
    const value = store.get(t)?.get(property)?.get(key);
    if (value !== undefined) return value;
  }
  return undefined;
}

function defineMetadata(key: Key, value: unknown, target: Target, property?: string | symbol): void {
  let byProperty = store.get(target);
  if (!byProperty) store.set(target, (byProperty = new Map()));
  let byKey = byProperty.get(property);
  if (!byKey) byProperty.set(property, (byKey = new Map()));
  byKey.set(key, value);
}

function metadata(key: Key, value: unknown) {
  return function decorate(target: Target, property?: string | symbol): void {
    defineMetadata(key, value, target, property);
  };
}

const reflect = Reflect as unknown as Record<string, unknown>;
if (typeof reflect.getMetadata !== "function") {
  Object.assign(reflect, { getMetadata, getOwnMetadata, defineMetadata, metadata });
}
