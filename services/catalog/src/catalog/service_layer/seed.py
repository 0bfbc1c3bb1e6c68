"""The demo catalog loaded on a shop's first start: 6 categories, 50 products, prices in KRW."""

from __future__ import annotations

from chassis.db import UnitOfWork

from catalog.adapters.repository import CatalogRepository
from catalog.domain.model import Category, Money, Product
from catalog.service_layer import events

SEED_FLAG = "demo_catalog_seeded"

CATEGORIES = {
    "coffee": "Coffee & Tea",
    "kitchen": "Kitchen",
    "outdoor": "Outdoor",
    "electronics": "Electronics",
    "books": "Books",
    "apparel": "Apparel",
}

# (sku, name, category, price in KRW, description)
PRODUCTS: list[tuple[str, str, str, int, str]] = [
    ("COF-ETH-250", "Ethiopia Yirgacheffe beans 250 g", "coffee", 18900, "Light roast, floral and citrus notes."),
    ("COF-COL-500", "Colombia Huila beans 500 g", "coffee", 27500, "Medium roast with caramel sweetness."),
    ("COF-DEC-250", "Swiss-water decaf beans 250 g", "coffee", 19500, "All the taste, none of the caffeine."),
    ("COF-ESP-1K", "House espresso blend 1 kg", "coffee", 42000, "Dark chocolate and hazelnut, built for milk."),
    ("TEA-GRN-100", "Jeju green tea 100 g", "coffee", 15000, "First flush sejak leaves from Jeju island."),
    ("TEA-BLK-100", "Assam breakfast tea 100 g", "coffee", 12000, "Malty black tea that stands up to milk."),
    ("TEA-BAR-500", "Roasted barley tea 500 g", "coffee", 6900, "Boricha for hot or iced brewing."),
    ("COF-DRP-01", "Ceramic pour-over dripper", "coffee", 24000, "Spiral ribs for an even extraction."),
    ("COF-GRN-02", "Hand burr grinder", "coffee", 89000, "Stainless conical burrs, 40 click settings."),
    ("KIT-KNF-20", "Chef's knife 20 cm", "kitchen", 129000, "VG-10 steel core, hammered finish."),
    ("KIT-BRD-01", "Walnut cutting board", "kitchen", 58000, "End-grain board that is kind to knives."),
    ("KIT-PAN-28", "Carbon steel frying pan 28 cm", "kitchen", 64000, "Seasons with use, lasts for decades."),
    ("KIT-POT-24", "Enamelled cast iron pot 24 cm", "kitchen", 239000, "Holds heat for stews and bread."),
    ("KIT-RCK-01", "Rice cooker 6 cups", "kitchen", 189000, "Pressure cooking with a keep-warm mode."),
    ("KIT-KTL-01", "Gooseneck electric kettle", "kitchen", 99000, "Set the temperature to the degree."),
    ("KIT-STR-03", "Glass storage jars, set of 3", "kitchen", 32000, "Airtight lids for grains and beans."),
    ("KIT-SPT-02", "Silicone spatula pair", "kitchen", 14500, "Heat-safe to 260 degrees."),
    ("KIT-SCL-01", "Digital kitchen scale", "kitchen", 27000, "0.1 g precision up to 3 kg."),
    ("OUT-TNT-2P", "Two-person trekking tent", "outdoor", 349000, "1.6 kg, two doors, two vestibules."),
    ("OUT-BAG-M3", "Down sleeping bag, minus 3", "outdoor", 279000, "650 fill power, packs to a melon."),
    ("OUT-STV-01", "Compact gas stove", "outdoor", 45000, "Boils a litre in under four minutes."),
    ("OUT-LMP-01", "Rechargeable camping lantern", "outdoor", 38000, "300 lumens, USB-C, 20 hours."),
    ("OUT-PCK-40", "Hiking backpack 40 L", "outdoor", 169000, "Ventilated back panel and rain cover."),
    ("OUT-BTL-75", "Insulated bottle 750 ml", "outdoor", 35000, "Cold for 24 hours, hot for 12."),
    ("OUT-CHR-01", "Folding camp chair", "outdoor", 72000, "Aluminium frame, 120 kg load."),
    ("OUT-POL-02", "Carbon trekking poles", "outdoor", 119000, "Three sections, flick locks."),
    ("ELE-EAR-01", "Wireless earbuds", "electronics", 159000, "Active noise cancelling, 8-hour battery."),
    ("ELE-SPK-01", "Portable speaker", "electronics", 89000, "Waterproof, pairs for stereo."),
    ("ELE-KBD-01", "Mechanical keyboard", "electronics", 139000, "Hot-swappable switches, Korean layout."),
    ("ELE-MSE-01", "Ergonomic mouse", "electronics", 79000, "Vertical grip, silent clicks."),
    ("ELE-CHG-65", "65 W USB-C charger", "electronics", 49000, "GaN, three ports, folding plug."),
    ("ELE-PWR-20", "Power bank 20,000 mAh", "electronics", 55000, "Charges a laptop once, a phone four times."),
    ("ELE-CAM-01", "Action camera", "electronics", 299000, "4K at 60 fps, stabilised."),
    ("ELE-LMP-01", "LED desk lamp", "electronics", 62000, "Adjustable colour temperature, USB port."),
    ("BOK-PY-01", "Architecture Patterns with Python", "books", 42000, "Domain-driven design, event-driven microservices."),
    ("BOK-MS-01", "Building Microservices, 2nd ed.", "books", 48000, "Designing fine-grained systems."),
    ("BOK-DD-01", "Designing Data-Intensive Applications", "books", 45000, "The big ideas behind reliable systems."),
    ("BOK-RL-01", "Release It!, 2nd ed.", "books", 39000, "Design and deploy production-ready software."),
    ("BOK-CK-01", "Korean Home Cooking", "books", 35000, "Classic recipes from a Seoul kitchen."),
    ("BOK-TR-01", "Hiking the Baekdudaegan", "books", 28000, "A guide to Korea's mountain spine."),
    ("BOK-CF-01", "The World Atlas of Coffee", "books", 41000, "From beans to brewing."),
    ("BOK-NV-01", "Pachinko", "books", 18000, "A novel across four generations."),
    ("APP-TSH-M", "Organic cotton T-shirt", "apparel", 29000, "Heavyweight jersey, relaxed fit."),
    ("APP-HOD-M", "Fleece hoodie", "apparel", 69000, "Brushed inside, kangaroo pocket."),
    ("APP-JKT-M", "Waterproof shell jacket", "apparel", 219000, "Three-layer membrane, pit zips."),
    ("APP-SCK-3", "Merino hiking socks, 3 pairs", "apparel", 36000, "Cushioned sole, no itch."),
    ("APP-CAP-01", "Five-panel cap", "apparel", 25000, "Quick-dry nylon, adjustable strap."),
    ("APP-APR-01", "Canvas apron", "apparel", 39000, "Cross-back straps, two pockets."),
    ("APP-GLV-01", "Touchscreen gloves", "apparel", 22000, "Warm enough for a winter commute."),
    ("APP-SCF-01", "Wool scarf", "apparel", 45000, "Lambswool from a small mill."),
]


async def seed_demo_catalog(uow: UnitOfWork) -> int:
    """Load the demo catalog once per database; return how many products were added."""
    async with uow:
        repo = CatalogRepository(uow.session)
        if not await repo.claim_flag(SEED_FLAG):
            return 0
        for slug, name in CATEGORIES.items():
            await repo.add_category(Category.new(slug, name))
        ids = {c.slug: c.id for c in await repo.categories()}
        added = 0
        for sku, name, category, price, description in PRODUCTS:
            if await repo.sku_exists(sku):
                continue
            product = Product.new(sku=sku, name=name, description=description,
                                  category=category, price=Money.parse(price, "KRW"))
            await repo.add(product, ids[category])
            await events.product_created(uow.session, product)
            added += 1
        await uow.commit()
        return added
