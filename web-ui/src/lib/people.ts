// User names for ids (who reviewed an event). Admins can list users; everyone else sees
// their own name and "user #id" for others.
import { useEffect, useState } from 'preact/hooks';
import { api, type User } from '../api';
import { me } from '../state';

let cache: Promise<Map<number, User>> | null = null;

export function invalidateUsers(): void {
  cache = null;
}

function load(): Promise<Map<number, User>> {
  if (!cache) {
    cache =
      me.get()?.role === 'admin'
        ? api
            .users()
            .then((list) => new Map(list.map((u) => [u.id, u])))
            .catch(() => new Map())
        : Promise.resolve(new Map());
  }
  return cache;
}

export function useUserName(id: number | null | undefined): string {
  const [name, setName] = useState<string>('');
  useEffect(() => {
    if (id === null || id === undefined) return;
    const mine = me.get();
    if (mine && mine.id === id) {
      setName(mine.name);
      return;
    }
    let live = true;
    void load().then((m) => live && setName(m.get(id)?.name ?? `user #${id}`));
    return () => {
      live = false;
    };
  }, [id]);
  if (id === null || id === undefined) return '';
  return name || `user #${id}`;
}
