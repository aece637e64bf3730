import { clearMarket } from "./_clearing.ts";
import type { Bid, Market, Settlement } from "./types.ts";

/** Settles a tiered market; see the module documentation of `mod.ts` for the rules. */
export function settleMarket(market: Market): Settlement {
  const { capacity, bids } = market;
  const headroom = market.headroom ?? 0;
  const isElastic = (b: Bid) => b.tier === "elastic";
  const target = (b: Bid) => Math.min(b.cap, Math.max(b.floor, b.demand));
  const protectedBids = bids.filter((b) => !isElastic(b));
  const elasticBids = bids.filter(isElastic);
  const sum = (list: readonly Bid[], f: (b: Bid) => number) =>
    list.reduce((total, b) => total + f(b), 0);
  const floorSum = sum(bids, (b) => b.floor);
  const elasticFloors = sum(elasticBids, (b) => b.floor);

  // 1. Guarantees, protected tier first (beyond the elastic floors), each tier
  // an exact clearing of its bids between floor and target.
  const strict = (list: Bid[]) => list.map((b) => ({ ...b, demand: target(b), cap: target(b) }));
  const protectedClearing = clearMarket({
    capacity: Math.max(0, capacity - elasticFloors),
    surplus: "retain",
    bids: strict(protectedBids),
  });
  const protectedGuaranteed = sum(protectedBids, (b) => protectedClearing.allocations[b.id]);
  const elasticClearing = clearMarket({
    capacity: Math.max(0, capacity - protectedGuaranteed),
    surplus: "retain",
    bids: strict(elasticBids),
  });
  const guarantees: Record<string, number> = {
    ...protectedClearing.allocations,
    ...elasticClearing.allocations,
  };

  // 2. Limits. A protected bid runs under its target when its tier is not
  // contended; when it is, under its guarantee plus a weighted share of what
  // the protected bids leave idle, up to its target. The elastic tier runs on
  // what the protected bids do not use: each elastic bid between its
  // guarantee and its target, the budget water-filled by weight. Either way,
  // only bids with unmet demand get more than their guarantee.
  // Bids between their guarantee and their target, for the limit clearings.
  const aboveGuarantee = (list: Bid[]) =>
    list.map((b) => ({
      id: b.id,
      weight: b.weight,
      floor: guarantees[b.id],
      demand: target(b),
      cap: Math.max(guarantees[b.id], target(b)),
    }));
  const protectedUse = sum(protectedBids, (b) => Math.max(0, b.usage ?? target(b)));
  const idleForProtected = Math.max(
    0,
    Math.floor(capacity - elasticFloors - headroom - protectedUse),
  );
  const protectedLimits = clearMarket({
    capacity: protectedGuaranteed + idleForProtected,
    surplus: "retain",
    bids: aboveGuarantee(protectedBids),
  });
  const limits: Record<string, number> = { ...protectedLimits.allocations };
  // Open protected limits: the kernel's weights, not the limits, share what
  // the protected pods want beyond the node. Nothing else depends on them.
  if (market.protectedLimit === "cap") {
    for (const b of protectedBids) limits[b.id] = b.cap;
  }
  const elasticGuaranteed = sum(elasticBids, (b) => guarantees[b.id]);
  // Elastic bids that yield in the kernel take only what every other pod
  // leaves, whatever their limits: the budget need not leave the protected
  // usage free, and may reach into the CPU kept out of the capacity for the
  // pods the market does not manage.
  const yields = market.elasticYields === true;
  const elasticCapacity = yields
    ? Math.max(capacity, market.yieldingCapacity ?? capacity)
    : capacity;
  const elasticBudget = Math.max(
    elasticGuaranteed,
    Math.floor(elasticCapacity - headroom - (yields ? 0 : protectedUse)),
  );
  const elasticLimits = clearMarket({
    capacity: elasticBudget,
    surplus: "retain",
    bids: aboveGuarantee(elasticBids),
  });
  Object.assign(limits, elasticLimits.allocations);

  const price = protectedClearing.contended
    ? protectedClearing.price
    : elasticClearing.contended
    ? elasticClearing.price
    : 0;
  return {
    guarantees,
    limits,
    elasticBudget,
    price,
    contended: sum(bids, target) > capacity,
    oversubscribed: floorSum > capacity,
  };
}
