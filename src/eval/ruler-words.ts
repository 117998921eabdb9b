/**
 * Word lists for the RULER-style tasks: keys are "adjective-noun" as in RULER (which draws them from the
 * wonderwords lists), QA facts are about people, towns and pets. Each list is split into disjoint train and test
 * halves by ruler.ts, so a list needs enough entries for both.
 */

export const ADJECTIVES = [
  'able', 'acid', 'afraid', 'agile', 'alert', 'amber', 'ancient', 'angry', 'arctic', 'ashen', 'awake', 'bare',
  'bitter', 'blank', 'bold', 'brave', 'brief', 'bright', 'brisk', 'broad', 'bronze', 'busy', 'calm', 'candid',
  'careful', 'cheap', 'cheerful', 'chilly', 'civil', 'clever', 'cloudy', 'clumsy', 'coarse', 'cold', 'cosmic',
  'cozy', 'crisp', 'cruel', 'curious', 'damp', 'daring', 'dark', 'dazzling', 'deep', 'dense', 'dizzy', 'dry',
  'dusty', 'eager', 'early', 'earnest', 'elegant', 'empty', 'endless', 'exotic', 'faint', 'fair', 'fancy', 'fast',
  'fearless', 'feeble', 'fierce', 'fine', 'firm', 'flat', 'fluffy', 'fond', 'foggy', 'fragile', 'frank', 'free',
  'fresh', 'friendly', 'frozen', 'gentle', 'giant', 'gifted', 'glad', 'gloomy', 'golden', 'graceful', 'grand',
  'gray', 'greasy', 'green', 'grim', 'gritty', 'hairy', 'handy', 'happy', 'hardy', 'harsh', 'hasty', 'heavy',
  'hidden', 'hollow', 'honest', 'humble', 'hungry', 'icy', 'idle', 'jagged', 'jolly', 'keen', 'kind', 'large',
  'late', 'lazy', 'lean', 'light', 'little', 'lively', 'lonely', 'loud', 'loyal', 'lucky', 'mellow', 'merry',
  'mighty', 'mild', 'misty', 'modern', 'modest', 'muddy', 'narrow', 'neat', 'nervous', 'nimble', 'noble', 'noisy',
  'odd', 'olive', 'orange', 'pale', 'patient', 'plain', 'polite', 'proud', 'purple', 'quick', 'quiet', 'rapid',
  'rare', 'rich', 'rigid', 'ripe', 'rough', 'round', 'rowdy', 'royal', 'rusty', 'sandy', 'scarlet', 'secret',
  'shallow', 'sharp', 'shiny', 'short', 'shy', 'silent', 'silky', 'silver', 'simple', 'sleepy', 'slim', 'slow',
  'smooth', 'snowy', 'soft', 'solid', 'sour', 'spare', 'spicy', 'steady', 'steep', 'sticky', 'stormy', 'strange',
  'strict', 'sturdy', 'subtle', 'sunny', 'swift', 'tall', 'tame', 'tender', 'tense', 'thick', 'thin', 'tidy',
  'tiny', 'tough', 'tranquil', 'twisted', 'upbeat', 'urban', 'vague', 'vast', 'velvet', 'vivid', 'warm', 'wary',
  'weary', 'wicked', 'wide', 'wild', 'windy', 'wise', 'witty', 'wooden', 'young', 'zealous',
];

export const NOUNS = [
  'acorn', 'anchor', 'apple', 'arrow', 'attic', 'badge', 'bakery', 'balcony', 'bamboo', 'banner', 'barrel',
  'basket', 'beacon', 'beetle', 'bell', 'bench', 'blanket', 'boat', 'bottle', 'boulder', 'bracelet', 'bridge',
  'bucket', 'button', 'cabin', 'cactus', 'camel', 'candle', 'canoe', 'canyon', 'carpet', 'castle', 'cedar',
  'cellar', 'chapel', 'cherry', 'chimney', 'circus', 'cliff', 'clock', 'clover', 'cobweb', 'comet', 'compass',
  'cottage', 'crater', 'crayon', 'cricket', 'crown', 'cushion', 'daisy', 'desert', 'diamond', 'dolphin', 'donkey',
  'dragon', 'drum', 'eagle', 'easel', 'elbow', 'engine', 'falcon', 'feather', 'fence', 'fiddle', 'flute',
  'forest', 'fountain', 'fox', 'galaxy', 'garden', 'garlic', 'glacier', 'goblet', 'granite', 'guitar', 'hammer',
  'harbor', 'harp', 'hedge', 'helmet', 'hill', 'honey', 'horizon', 'igloo', 'island', 'ivory', 'jacket', 'jungle',
  'kettle', 'kitten', 'ladder', 'lagoon', 'lantern', 'lemon', 'library', 'lighthouse', 'lizard', 'locket',
  'magnet', 'mango', 'maple', 'marble', 'meadow', 'mirror', 'mitten', 'monkey', 'mosaic', 'mountain', 'mushroom',
  'needle', 'nest', 'oasis', 'ocean', 'orchard', 'otter', 'owl', 'paddle', 'palace', 'panther', 'parrot',
  'pebble', 'pencil', 'pepper', 'piano', 'pillow', 'pine', 'planet', 'pocket', 'pond', 'puppet', 'puzzle',
  'pyramid', 'quarry', 'quill', 'rabbit', 'raft', 'rainbow', 'raven', 'reef', 'ribbon', 'river', 'robot',
  'rocket', 'saddle', 'sailor', 'salmon', 'satchel', 'scarf', 'scroll', 'shadow', 'shell', 'shovel', 'signal',
  'skillet', 'sparrow', 'spider', 'sponge', 'squirrel', 'stable', 'statue', 'storm', 'summit', 'swan', 'sword',
  'tablet', 'teapot', 'temple', 'thimble', 'thunder', 'tiger', 'tower', 'tractor', 'trumpet', 'tulip', 'tunnel',
  'turtle', 'umbrella', 'valley', 'vase', 'village', 'violin', 'volcano', 'wagon', 'walnut', 'walrus', 'whistle',
  'willow', 'window', 'wizard', 'wolf', 'yacht', 'zebra',
];

export const FIRST_NAMES = [
  'Ada', 'Alma', 'Anton', 'Arlo', 'Beatrix', 'Bruno', 'Camille', 'Cyrus', 'Dalia', 'Dmitri', 'Edith', 'Elias',
  'Esme', 'Felix', 'Flora', 'Gideon', 'Greta', 'Hector', 'Hilda', 'Ingrid', 'Ivo', 'Jasper', 'Juno', 'Kasimir',
  'Keira', 'Leopold', 'Lidia', 'Magnus', 'Mira', 'Nadia', 'Nestor', 'Odette', 'Oskar', 'Paloma', 'Percy', 'Quentin',
  'Rosalind', 'Rufus', 'Sabine', 'Silas', 'Tamsin', 'Tobias', 'Ulrich', 'Una', 'Vera', 'Victor', 'Wanda', 'Wendell',
  'Xavier', 'Yara', 'Yusuf', 'Zelda', 'Zoran', 'Agnes', 'Basil', 'Clara', 'Dorian', 'Elsa', 'Fabian', 'Gemma',
];

export const SURNAMES = [
  'Abernathy', 'Achterberg', 'Balogun', 'Barrowman', 'Castellano', 'Chadwick', 'Delacroix', 'Dunmore', 'Eckhart',
  'Ellingworth', 'Falconer', 'Fairweather', 'Galloway', 'Grimaldi', 'Hargreave', 'Holloway', 'Ibsen', 'Iverson',
  'Jablonski', 'Jarrett', 'Kowalczyk', 'Kingsley', 'Lindqvist', 'Lockhart', 'Marchetti', 'Merriweather', 'Nakamura',
  'Northcott', 'Okonkwo', 'Oyelaran', 'Pemberton', 'Petrakis', 'Quill', 'Quintero', 'Ravensworth', 'Rosales',
  'Szabo', 'Stanhope', 'Thistlewood', 'Trevisan', 'Underhill', 'Urquhart', 'Vandermeer', 'Villanueva', 'Whitlock',
  'Wojcik', 'Yardley', 'Yilmaz', 'Zamora', 'Zielinski', 'Ashdown', 'Blackwood', 'Coppersmith', 'Drummond',
  'Everhart', 'Fenwick', 'Goldsworthy', 'Hawthorne', 'Kettering', 'Moorcroft',
];

/** Syllables combined into made-up town names, so QA answers cannot come from a model's prior knowledge. */
export const TOWN_STARTS = [
  'Ash', 'Bel', 'Bram', 'Cal', 'Dun', 'El', 'Fal', 'Gar', 'Hal', 'Kel', 'Lor', 'Mar', 'Nor', 'Oak', 'Pem', 'Quen',
  'Ros', 'Sel', 'Tal', 'Ul', 'Val', 'Wen', 'Yar', 'Zel',
];
export const TOWN_ENDS = [
  'brook', 'bury', 'by', 'cliff', 'dale', 'field', 'ford', 'gate', 'haven', 'holm', 'hurst', 'mere', 'moor',
  'mouth', 'port', 'ridge', 'stead', 'stow', 'thorpe', 'ton', 'wick', 'worth',
];
